"""Structured log lines that Cloud Logging understands: one JSON object per line on stdout.

Only the fields passed are written; callers never pass tokens or secrets. Tracing adds the
fields that put a line in its trace (`add_fields`): this module imports nothing of the core,
so anything may log.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

_field_sources: list[Callable[[], dict]] = []
# Built once: json.dumps(..., default=str) builds an encoder for every line.
_encode = json.JSONEncoder(default=str).encode


def add_fields(source: Callable[[], dict]) -> None:
    """Have every line carry `source()`'s fields too (tracing's, when it is on)."""
    if source not in _field_sources:
        _field_sources.append(source)


def log(severity: str, message: str, **fields) -> None:
    # No timestamp of our own: Cloud Logging stamps each line as it arrives.
    entry = {"severity": severity, "message": message}
    entry.update({key: value for key, value in fields.items() if value is not None})
    for source in _field_sources:
        entry.update(source())  # tracing's: {} unless Cloud Trace is on, then the line joins its trace
    sys.stdout.write(_encode(entry) + "\n")
    sys.stdout.flush()


def info(message: str, **fields) -> None:
    log("INFO", message, **fields)


def warning(message: str, **fields) -> None:
    log("WARNING", message, **fields)


def error(message: str, **fields) -> None:
    log("ERROR", message, **fields)
