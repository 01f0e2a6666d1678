"""Signed completion webhooks.

The body is the job as JSON, `{"type": "job.completed", "job": {...}}`. The signature header
follows the common scheme (Stripe's, among others):

    X-Jobqueue-Signature: t=<unix seconds>,v1=<hex>,v2=<hex>

    v1: HMAC-SHA256 of "<t>.<body>", keyed with the tenant's secret
    v2: HMAC-SHA256 of "<t>\n<callback URL>\n<body>", with the same key

v2 names the recipient: a body sent to one receiver does not verify at another (a receiver
that checks v1 alone accepts any delivery signed with the same secret, within its
tolerance). The URL is the callbackUrl exactly as it was given at enqueue; a URL holds no
newline (enqueue refuses control characters), so the signed text reads one way only. The
key is the tenant's own secret when WEBHOOK_SECRETS names one, else WEBHOOK_SECRET.

To verify: split the header, recompute the HMAC over the timestamp, (for v2) the URL, and
the raw body bytes, compare in constant time, and refuse a timestamp older than your
tolerance (five minutes is usual; with Cloud Tasks retrying a delivery, the timestamp is the
first attempt's, so allow the retry window or deduplicate by job id). `verify_signature`
below does exactly this (v2 when given the URL).

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


def _digest(secret: str, text: bytes) -> str:
    return hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()


def _v1(secret: str, moment: int, body: bytes) -> str:
    return _digest(secret, f"{moment}.".encode() + body)


def _v2(secret: str, moment: int, url: str, body: bytes) -> str:
    return _digest(secret, f"{moment}\n{url}\n".encode() + body)


def sign(secret: str, body: bytes, timestamp: int | None = None, url: str | None = None) -> str:
    """The header's value: t and v1, and v2 when the destination `url` is given."""
    moment = int(time.time()) if timestamp is None else timestamp
    header = f"t={moment},v1={_v1(secret, moment, body)}"
    return header if url is None else f"{header},v2={_v2(secret, moment, url, body)}"


def verify_signature(
    secret: str,
    header: str,
    body: bytes,
    tolerance_seconds: float = 300,
    now: float | None = None,
    url: str | None = None,
) -> bool:
    """True when `header` signs `body` with `secret` and is no older than the tolerance; given
    the receiver's own `url`, its v2 must sign that URL too (v1 is then not enough).
    Anything malformed is simply False: a receiver calls this on whatever arrived."""
    if not isinstance(header, str):
        return False
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    timestamp, signature = fields.get("t", ""), fields.get("v1" if url is None else "v2", "")
    # ASCII digits only: str.isdigit also accepts "²" and other digits that int() refuses.
    if not _TIMESTAMP.fullmatch(timestamp) or not _HEX_DIGEST.fullmatch(signature):
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance_seconds:
        return False
    moment = int(timestamp)
    expected = _v1(secret, moment, body) if url is None else _v2(secret, moment, url, body)
    return hmac.compare_digest(expected.encode(), signature.encode())


def signed_headers(secret: str | None, body: bytes, url: str | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/json", "User-Agent": "jobqueue-webhook/0.1"}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body, url=url)
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
        headers = signed_headers(secret, body, url)
        status = netguard.request_status("POST", url, body, headers, policy, timeout, own_urls)
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
