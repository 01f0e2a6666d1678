"""Structured log lines that Cloud Logging understands: one JSON object per line on stdout.

Only the fields passed are written; callers never pass tokens or secrets.
"""

from __future__ import annotations

import json
import sys

from shared.core import tracing


def log(severity: str, message: str, **fields) -> None:
    # No timestamp of our own: Cloud Logging stamps each line as it arrives.
    entry = {"severity": severity, "message": message}
    entry.update({key: value for key, value in fields.items() if value is not None})
    entry.update(tracing.log_fields())  # {} unless Cloud Trace is on: then the line joins its trace
    sys.stdout.write(json.dumps(entry, default=str) + "\n")
    sys.stdout.flush()


def info(message: str, **fields) -> None:
    log("INFO", message, **fields)


def warning(message: str, **fields) -> None:
    log("WARNING", message, **fields)


def error(message: str, **fields) -> None:
    log("ERROR", message, **fields)
