"""Signed completion webhooks.

The body is the job as JSON, `{"type": "job.completed", "job": {...}}`. The signature header
follows the common scheme (Stripe's, among others):

    X-Jobqueue-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with WEBHOOK_SECRET>

To verify: split the header, recompute the HMAC over the timestamp, a dot and the raw body
bytes, compare in constant time, and refuse a timestamp older than your tolerance (five
minutes is usual; with Cloud Tasks retrying a delivery, the timestamp is the first
attempt's, so allow the retry window or deduplicate by job id). `verify_signature` below
does exactly this.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request

from shared.core import log
from shared.core.jobs import Job

SIGNATURE_HEADER = "X-Jobqueue-Signature"
DIRECT_ATTEMPTS = 3
DIRECT_TIMEOUT_SECONDS = 5.0


def webhook_body(job: Job) -> bytes:
    return json.dumps({"type": f"job.{job.job_status}", "job": job.to_json()}, separators=(",", ":")).encode()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    moment = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{moment}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={moment},v1={digest}"


def verify_signature(
    secret: str, header: str, body: bytes, tolerance_seconds: float = 300, now: float | None = None
) -> bool:
    """True when `header` signs `body` with `secret` and is no older than the tolerance."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, signature = fields.get("t", ""), fields.get("v1", "")
    if not timestamp.isdigit() or not signature:
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_seconds:
        return False
    expected = sign(secret, body, int(timestamp)).split("v1=", 1)[1]
    return hmac.compare_digest(expected, signature)


def signed_headers(secret: str | None, body: bytes) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": "jobqueue-webhook/0.1"}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    return headers


def deliver_directly(url: str, secret: str | None, job: Job, attempts: int = DIRECT_ATTEMPTS) -> bool:
    """POST the webhook with a few bounded retries. Failure is logged, never raised."""
    body = webhook_body(job)
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(url, data=body, headers=signed_headers(secret, body), method="POST")
        try:
            with urllib.request.urlopen(request, timeout=DIRECT_TIMEOUT_SECONDS) as response:
                if 200 <= response.status < 300:
                    return True
                problem = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            problem = f"HTTP {exc.code}"
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            problem = str(getattr(exc, "reason", exc))
        log.warning("Webhook delivery failed", jobId=job.id, attempt=attempt, error=problem)
        if attempt < attempts:
            time.sleep(0.5 * 2 ** (attempt - 1))
    return False
