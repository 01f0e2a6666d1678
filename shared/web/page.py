"""The status page: one self-contained HTML page that follows a job's stream, shows its
steps, log and preview, and can cancel it. No build step, no external fonts or scripts,
and a strict Content-Security-Policy: inline code runs only with this response's nonce.

Also the framed documents it shows: the finished newsletter and the latest preview, each
served alone under a sandboxing policy of its own."""

from __future__ import annotations

import re
import secrets
from functools import cache
from pathlib import Path

from shared.core.errors import NotFound
from shared.core.jobs import Job, JobStatus
from shared.core.preview import latest_preview
from shared.core.queue import Event
from shared.web.pages import fill, origin

PAGE = Path(__file__).with_name("status_page.html")


@cache
def _template() -> str:
    return PAGE.read_text()


def render_status_page(
    job_id: str, cancel_url: str | None, enqueue_url: str | None, card: dict, main: dict
) -> tuple[str, dict[str, str]]:
    """(the page, its security headers) for one job; it links to the dashboard at `enqueue_url`.
    Its stream, documents and client are fixed queries on its own address, never its request
    path (see pages.py). It names the job in its kind's words (`card`, the kind's card) and
    its links in the default kind's (`main`)."""
    nonce = secrets.token_urlsafe(16)
    words = ("label", "plural", "title", "start")
    config = {
        "jobId": job_id,
        "cancelUrl": cancel_url,
        "enqueueUrl": enqueue_url,
        "card": {key: card[key] for key in (*words, "steps", "noun") if key in card},
        "main": {key: main[key] for key in words if key in main},
    }
    page = fill(_template(), nonce, config)
    connect = "'self'" + (f" {origin(cancel_url)}" if cancel_url else "")
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
# stylesheet allowed and nothing else. Images only inline (data:): a remote image in a
# result would tell its server who opened it, and when (issue 26; the newsletter has none).
DOCUMENT_POLICY = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"

# Bidirectional embedding, override and isolate controls (U+202A-U+202E, U+2066-U+2069): in a
# feed's title or a source's name they would reverse the document's own words beside them.
# Right-to-left text needs none of them. (pages.js drops the same from the pages' text.)
BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")


def without_bidi_controls(text: str) -> str:
    return BIDI_CONTROLS.sub("", text)


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
    content = without_bidi_controls(shown["content"])
    return content, "text/html" if shown.get("format") == "html" else "text/plain"
