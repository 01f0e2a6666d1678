"""status: GET ?id=<uuid> for the job and its log lines, or a live Server-Sent Events stream
(Accept: text/event-stream, or ?stream=1) that resumes from Last-Event-ID, or, for a
browser (Accept: text/html, or ?view=page), a page that follows the job and can cancel it.
`?view=metrics` with the bearer token: the queue's figures (shared/core/metrics.py).

GET ?list=1 with Authorization: Bearer <token> lists the caller's tenant's jobs, newest
first, a page at a time; with stream=1 (or Accept: text/event-stream), a snapshot of the
first page and then every change to a job in the list's scope (shared/web/job_list.py).

Each open stream holds one functions-framework thread: set THREADS to the number of
streams one instance should serve (see the README).
"""

import re

import flask
import functions_framework

from shared.core import listing, metrics, operations, queue
from shared.core.errors import ValidationError
from shared.core.listener import JobEventListener
from shared.kinds.newsletter.sources import list_sources
from shared.web import pages
from shared.web.job_list import JobListStream, list_body
from shared.web.job_status import status_body
from shared.web.limits import RateLimits
from shared.web.page import render_status_page
from shared.web.result_page import document_response
from shared.web.service import Service
from shared.web.sse import JobStream, peer_connected

MAX_EVENT_SEQ = 2**63 - 1  # job_events.seq is a bigint
service = Service("status")
listener = JobEventListener(service.settings.direct_database, service.settings.db_timeout_seconds)
streams = JobStream(service.pool, listener, service.settings, service.job_body)
limits = RateLimits.of(service)
list_streams = JobListStream(service.pool, listener, service.settings, service.job_body)
DOCUMENT_VIEWS = ("document", "preview", "download")
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def wants_page(request) -> bool:
    """A person's browser (Accept: text/html), or ?view=page."""
    if request.args.get("view") == "page":
        return True
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and not wants_stream(request) and request.args.get("view") is None


def page(job_id: str):
    html, headers = render_status_page(job_id, service.settings.cancel_url, service.settings.enqueue_url)
    return flask.Response(html, mimetype="text/html", headers=headers)


def document(job, view: str):
    events = []
    if view == "preview":
        with service.pool.session() as session:
            events = queue.list_events(session, job.id)
    return document_response(job, events, view, service.settings, flask.request)


def wants_stream(request) -> bool:
    return request.args.get("stream") in ("1", "true") or "text/event-stream" in request.headers.get("Accept", "")


def opens_stream(request) -> bool:
    return request.args.get("view") not in DOCUMENT_VIEWS and not wants_page(request) and wants_stream(request)


def resume_point(request) -> int:
    """The sequence number to resume after: ASCII digits only (str.isdigit also takes "²",
    which int() refuses) and no larger than the bigint it is compared with."""
    field = "Last-Event-ID" if request.headers.get("Last-Event-ID") else "lastEventId"
    raw = request.headers.get("Last-Event-ID") or request.args.get("lastEventId") or "0"
    if not re.fullmatch(r"[0-9]{1,19}", raw) or int(raw) > MAX_EVENT_SEQ:
        raise ValidationError.of([(field, "must be a whole number (an event's id)")])
    return int(raw)


def job_list(request):
    """The caller's jobs: one page as JSON, or the live list."""
    caller = limits.authenticate(request, required=True)
    limits.count(request, "stream" if wants_stream(request) else "status", caller)
    wanted = listing.filter_from_query(request.args, caller)
    if wants_stream(request):
        release = streams.slots.take(f"tenant:{caller}")  # a tenant's live lists, whoever opens them
        return flask.Response(list_streams.events(wanted, release), mimetype="text/event-stream", headers=SSE_HEADERS)
    with service.pool.session() as session:
        page = listing.list_jobs(session, wanted)
    return service.json(list_body(page, service.job_body))


def metrics_view(request):
    """The gauges and recent figures, for a caller with a token (never public: the job id is
    the capability of everything else here, and this names no job)."""
    tenant = limits.authenticate(request, required=True)
    limits.count(request, "status", tenant)
    window = metrics.window_seconds(request.args.get("window"))
    figures = operations.read_metrics(service.pool, service.settings, tenant, window)
    return service.json(figures, headers={"Cache-Control": "no-store"})


@functions_framework.http
@service.endpoint(["GET"])
def status(request):
    if "asset" in request.args:  # the pages' JavaScript client, the module clients/js publishes
        pages.standalone(request, "asset")
        return pages.asset_response(request.args["asset"])
    if request.args.get("view") == "archive":
        pages.standalone(request, "view")
        limits.count(request, "status")  # a database read (the sources' names), like the dashboard's
        with service.pool.session() as session:
            names = {source.id: source.name for source in list_sources(session)}
        return pages.archive(service.settings, names)
    if request.args.get("list") in ("1", "true"):
        return job_list(request)
    if request.args.get("view") == "metrics":
        return metrics_view(request)
    job_id = queue.parse_job_id(request.args.get("id"), field="id")
    # Stream opens and plain reads (the JSON, the page, its documents) are limited apart:
    # a page holds one stream, a poller makes many reads.
    limits.count(request, "stream" if opens_stream(request) else "status")
    with service.pool.session() as session:
        job = queue.get_job(session, job_id)
    if request.args.get("view") in DOCUMENT_VIEWS:
        return document(job, request.args["view"])
    if wants_page(request):
        return page(job_id)
    if not wants_stream(request):
        return service.json(status_body(service.pool, job, service.job_body))
    after = resume_point(request)
    if job.is_terminal and after and after >= job.last_event_seq:
        return flask.Response(status=204)  # nothing missed, nothing to come: EventSource stops here
    release = streams.slots.take(f"ip:{limits.client_address(request)}")  # public: callers by address
    body = streams.events(job, after, fresh=not after, release=release, connected=peer_connected(request.environ))
    return flask.Response(body, mimetype="text/event-stream", headers=SSE_HEADERS)
