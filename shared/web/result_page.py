"""The documents of a job (status?id=<id>&view=...): its latest preview ("preview"), its
result ("document") and the result's raw text as a file ("download").

Opened in a tab, the result is a page with a way back (issue 23): links to the dashboard, the
archive and the job's status page, and the raw text to download; a Markdown result is
rendered as HTML (markdown-it-py, CommonMark, raw HTML off), an HTML one gets the same links
at the top of its body. Framed in the status page (the browser says so: Sec-Fetch-Dest:
iframe) the document stays bare. Each is served alone under a sandboxing policy: no scripts,
no forms, a unique origin."""

from __future__ import annotations

import html
import re

import flask

from shared.core.jobs import Job, JobStatus
from shared.core.queue import Event
from shared.core.settings import Settings
from shared.web.page import DOCUMENT_POLICY, framed_document, without_bidi_controls

# The result's own tab may save its raw text (a sandbox blocks downloads unless it allows them).
RESULT_PAGE_POLICY = DOCUMENT_POLICY.replace("sandbox;", "sandbox allow-downloads;")
EXTENSIONS = {"html": "html", "markdown": "md"}
_BODY_TAG = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
<style>
  body {{ font: 16px/1.6 system-ui, sans-serif; color: #1a1a1a; margin: 0; overflow-wrap: anywhere; }}
  main {{ max-width: 42rem; margin: 1.5rem auto; padding: 0 1rem; }}
  a {{ color: #0b57d0; }} code, pre {{ white-space: pre-wrap; }}
</style>
</head>
<body>
{nav}<main>
{body}</main>
</body>
</html>
"""


def _nav(job: Job, result_format: str, dashboard_url: str | None, main: dict) -> str:
    """The way back, as links: fixed queries on this address and the dashboard's own URL,
    named in the default kind's words (`main`, its card: "Generate a newsletter")."""
    links = [(dashboard_url, main.get("start", "Start a job"))] if dashboard_url else []
    links += [
        ("?view=archive", f"All {main.get('plural', 'jobs').lower()}"),
        (f"?id={job.id}&stay=1", "Status and log"),
        (f"?id={job.id}&view=download", f"Download the {'HTML' if result_format == 'html' else 'Markdown'}"),
    ]
    anchors = " ".join(f'<a href="{html.escape(url)}">{html.escape(text)}</a>' for url, text in links)
    style = "font: 15px/1.5 system-ui, sans-serif; display: flex; flex-wrap: wrap; gap: 1rem; padding: .75rem 1rem; "
    style += "border-bottom: 1px solid #ddd; background: #f4f6fa"
    return f'<nav aria-label="Pages" style="{style}">{anchors}</nav>\n'


def render_markdown(text: str) -> str:
    # Imported here: only a Markdown result's page needs it, not the status function's start.
    from markdown_it import MarkdownIt  # noqa: PLC0415

    return MarkdownIt("commonmark", {"html": False}).render(text)


def result_page(job: Job, content: str, result_format: str, dashboard_url: str | None, main: dict) -> str:
    nav = _nav(job, result_format, dashboard_url, main)
    if result_format == "html":
        found = _BODY_TAG.search(content)
        return content[: found.end()] + "\n" + nav + content[found.end() :] if found else nav + content
    title = (job.result or {}).get("title") or "Result"
    return PAGE.format(title=html.escape(without_bidi_controls(str(title))), nav=nav, body=render_markdown(content))


def download(job: Job) -> flask.Response:
    result = job.result if isinstance(job.result, dict) and job.job_status == JobStatus.COMPLETED else {}
    content, mimetype = framed_document(job, [], "document")  # NotFound when there is none
    extension = EXTENSIONS.get(result.get("format"), "txt")
    headers = {
        "Content-Security-Policy": DOCUMENT_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": f'attachment; filename="{job.kind}-{job.id}.{extension}"',
    }
    return flask.Response(content, mimetype="text/markdown" if extension == "md" else mimetype, headers=headers)


def document_response(
    job: Job, events: list[Event], view: str, settings: Settings, request: flask.Request, main: dict
) -> flask.Response:
    """The preview, the result or its download; `events` are the job's (read for a preview);
    `main` is the default kind's card, whose words name the result page's links."""
    if view == "download":
        return download(job)
    content, mimetype = framed_document(job, events, view)
    headers = {
        "Content-Security-Policy": DOCUMENT_POLICY,
        "X-Content-Type-Options": "nosniff",
        "Vary": "Sec-Fetch-Dest",
    }
    if view == "document" and request.headers.get("Sec-Fetch-Dest") != "iframe":
        result_format = "html" if mimetype == "text/html" else "markdown"
        content, mimetype = result_page(job, content, result_format, settings.enqueue_url, main), "text/html"
        headers["Content-Security-Policy"] = RESULT_PAGE_POLICY
    return flask.Response(content, mimetype=mimetype, headers=headers)
