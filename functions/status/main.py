"""status: GET ?id=<uuid> for the job and its log lines, or a live Server-Sent Events stream
(Accept: text/event-stream, or ?stream=1) that resumes from Last-Event-ID.

Each open stream holds one functions-framework thread: set THREADS to the number of
streams one instance should serve (see the README).
"""

import flask
import functions_framework

from shared import queue
from shared.errors import ValidationError
from shared.jobs import iso
from shared.listener import JobEventListener
from shared.web.service import Service
from shared.web.sse import JobStream

service = Service("status")
listener = JobEventListener(service.settings.database, service.settings.db_timeout_seconds)
streams = JobStream(service.pool, listener, service.settings, service.job_body)


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
    if not wants_stream(request):
        return service.json(service.job_body(job, logs=log_lines(job_id)))
    after = resume_point(request)
    if job.is_terminal and after and after >= job.last_event_seq:
        return flask.Response(status=204)  # nothing missed, nothing to come: EventSource stops here
    body = streams.events(job, after, fresh=not after)
    return flask.Response(
        body,
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
