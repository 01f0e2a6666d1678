"""Signed completion webhooks.

The body is the job as JSON, `{"type": "job.completed", "job": {...}}`. The signature header
follows the common scheme (Stripe's, among others):

    X-Jobqueue-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with WEBHOOK_SECRET>

To verify: split the header, recompute the HMAC over the timestamp, a dot and the raw body
bytes, compare in constant time, and refuse a timestamp older than your tolerance (five
minutes is usual; with Cloud Tasks retrying a delivery, the timestamp is the first
attempt's, so allow the retry window or deduplicate by job id). `verify_signature` below
does exactly this.

Delivery itself is the outbox's (shared.core.outbox): `deliver` here makes one attempt, to
an address the guard (shared.core.netguard) checked, following no redirect.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time

from shared.core import netguard
from shared.core.jobs import Job

SIGNATURE_HEADER = "X-Jobqueue-Signature"
DIRECT_TIMEOUT_SECONDS = 5.0
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def webhook_body(job: Job) -> bytes:
    return json.dumps({"type": f"job.{job.job_status}", "job": job.to_json()}, separators=(",", ":")).encode()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    moment = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{moment}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={moment},v1={digest}"


def verify_signature(
    secret: str, header: str, body: bytes, tolerance_seconds: float = 300, now: float | None = None
) -> bool:
    """True when `header` signs `body` with `secret` and is no older than the tolerance.
    Anything malformed is simply False: a receiver calls this on whatever arrived."""
    if not isinstance(header, str):
        return False
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, signature = fields.get("t", ""), fields.get("v1", "")
    # ASCII digits only: str.isdigit also accepts "²" and other digits that int() refuses.
    if not _TIMESTAMP.fullmatch(timestamp) or not _HEX_DIGEST.fullmatch(signature):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_seconds:
        return False
    expected = sign(secret, body, int(timestamp)).split("v1=", 1)[1]
    return hmac.compare_digest(expected.encode(), signature.encode())


def signed_headers(secret: str | None, body: bytes) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": "jobqueue-webhook/0.1"}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    return headers


def deliver(
    url: str,
    secret: str | None,
    job: Job,
    policy: netguard.Policy,
    timeout: float = DIRECT_TIMEOUT_SECONDS,
    own_urls: tuple[str, ...] = (),
) -> str | None:
    """POST the webhook once, to a checked address, following no redirect. Returns None when
    the receiver answered 2xx, else what went wrong (for the server log; it never names an
    address). Retries are the outbox's (shared.core.outbox)."""
    body = webhook_body(job)
    try:
        status = netguard.request_status("POST", url, body, signed_headers(secret, body), policy, timeout, own_urls)
    except netguard.Refused as exc:
        return f"refused: {exc}"
    except TimeoutError:
        return f"no answer within {timeout:.2g} s"
    except OSError as exc:  # its text names no URL (which may hold a secret)
        return f"cannot deliver: {type(exc).__name__}: {exc}"[:300]
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        return f"HTTP {status} (redirects are not followed)"
    return f"HTTP {status}"
