"""The status page: one self-contained HTML page that follows a job's stream, shows its
steps, log and preview, and can cancel it. No build step, no external fonts or scripts,
and a strict Content-Security-Policy: inline code runs only with this response's nonce.

Also the framed documents it shows: the finished newsletter and the latest preview, each
served alone under a sandboxing policy of its own."""

from __future__ import annotations

import secrets
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from shared.core.errors import NotFound
from shared.core.jobs import Job, JobStatus
from shared.core.preview import latest_preview
from shared.core.queue import Event
from shared.web.pages import asset_url, script_json

PAGE = Path(__file__).with_name("status_page.html")


@cache
def _template() -> str:
    return PAGE.read_text()


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def render_status_page(job_id: str, stream_path: str, cancel_url: str | None) -> tuple[str, dict[str, str]]:
    """(the page, its security headers) for one job."""
    nonce = secrets.token_urlsafe(16)
    config = {
        "jobId": job_id,
        "streamPath": stream_path,
        "documentUrl": f"{stream_path}?id={job_id}&view=document",
        "cancelUrl": cancel_url,
        "clientUrl": asset_url(stream_path),
    }
    config_js = script_json(config)
    client_js = script_json(config["clientUrl"]).strip('"')
    page = _template().replace("__NONCE__", nonce).replace("__CLIENT_URL__", client_js).replace("__CONFIG__", config_js)
    connect = "'self'" + (f" {_origin(cancel_url)}" if cancel_url else "")
    policy = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        f"connect-src {connect}; frame-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return page, {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


# The documents the page frames: sandboxed (a unique origin, no scripts), their own
# stylesheet allowed and nothing else.
DOCUMENT_POLICY = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; frame-ancestors 'self'"


def framed_document(job: Job, events: list[Event], view: str) -> tuple[str, str]:
    """(content, mimetype) of the finished newsletter (view "document") or of the latest
    preview (view "preview"); NotFound when there is none yet."""
    if view == "preview":
        shown = latest_preview(events) or {}  # the newest text, put back together from its events
    else:
        result = job.result if isinstance(job.result, dict) and job.job_status == JobStatus.COMPLETED else {}
        shown = {"content": result.get("document"), "format": result.get("format")}
    if not isinstance(shown.get("content"), str):
        raise NotFound(f"This job has no {view} yet")
    return shown["content"], "text/html" if shown.get("format") == "html" else "text/plain"
