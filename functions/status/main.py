"""status: GET ?id=<uuid> for the job and its log lines, or a live Server-Sent Events stream
(Accept: text/event-stream, or ?stream=1) that resumes from Last-Event-ID, or, for a
browser (Accept: text/html, or ?view=page), a page that follows the job and can cancel it.

Each open stream holds one functions-framework thread: set THREADS to the number of
streams one instance should serve (see the README).
"""

import flask
import functions_framework

from shared.core import queue
from shared.core.errors import TooManyStreams, ValidationError
from shared.core.jobs import iso
from shared.core.listener import JobEventListener
from shared.web.page import DOCUMENT_POLICY, framed_document, render_status_page
from shared.web.service import Service
from shared.web.sse import JobStream

service = Service("status")
listener = JobEventListener(service.settings.direct_database, service.settings.db_timeout_seconds)
streams = JobStream(service.pool, listener, service.settings, service.job_body)


def wants_page(request) -> bool:
    """A person's browser (Accept: text/html), or ?view=page."""
    if request.args.get("view") == "page":
        return True
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and not wants_stream(request) and request.args.get("view") is None


def page(job_id: str):
    # The page's stream is this same function, at the path it was asked for.
    html, headers = render_status_page(job_id, flask.request.path or "/", service.settings.cancel_url)
    return flask.Response(html, mimetype="text/html", headers=headers)


def document(job, view: str):
    events = []
    if view == "preview":
        with service.pool.session() as session:
            events = queue.list_events(session, job.id)
    content, mimetype = framed_document(job, events, view)
    headers = {"Content-Security-Policy": DOCUMENT_POLICY, "X-Content-Type-Options": "nosniff"}
    return flask.Response(content, mimetype=mimetype, headers=headers)


def wants_stream(request) -> bool:
    return request.args.get("stream") in ("1", "true") or "text/event-stream" in request.headers.get("Accept", "")


def resume_point(request) -> int:
    raw = request.headers.get("Last-Event-ID") or request.args.get("lastEventId") or "0"
    if not raw.isdigit():
        raise ValidationError.of([("Last-Event-ID", "must be a whole number (an event's id)")])
    return int(raw)


def log_lines(job_id: str) -> list[dict]:
    with service.pool.session() as session:
        events = queue.list_events(session, job_id)
    return [
        {"seq": e.seq, "level": e.data.get("level", "info"), "message": e.data.get("message"), "at": iso(e.created_at)}
        for e in events
        if e.kind == "log"
    ]


@functions_framework.http
@service.endpoint(["GET"])
def status(request):
    job_id = queue.parse_job_id(request.args.get("id"), field="id")
    with service.pool.session() as session:
        job = queue.get_job(session, job_id)
    if request.args.get("view") in ("document", "preview"):
        return document(job, request.args["view"])
    if wants_page(request):
        return page(job_id)
    if not wants_stream(request):
        return service.json(service.job_body(job, logs=log_lines(job_id)))
    after = resume_point(request)
    if job.is_terminal and after and after >= job.last_event_seq:
        return flask.Response(status=204)  # nothing missed, nothing to come: EventSource stops here
    if not streams.try_open():
        raise TooManyStreams()
    body = streams.events(job, after, fresh=not after)
    return flask.Response(
        body,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
