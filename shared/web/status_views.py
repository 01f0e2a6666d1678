"""The status function's answers, one view each: the pages' asset, the archive page, the job
list (a page of JSON, or the live list), the metrics, a job's framed documents, its page, its
JSON (with its log lines), and its stream. functions/status/main.py picks the view; each view
reads the request, calls the core and writes the response.

Each open stream holds one functions-framework thread: set THREADS to the number of streams
one instance should serve (docs/status-stream.md).
"""

from __future__ import annotations

import re

import flask

from shared.core import handlers, listing, metrics, operations, queue
from shared.core.errors import ValidationError
from shared.core.notifier import JobEvents, notifier_for
from shared.web import pages
from shared.web.job_list import JobListStream, list_body
from shared.web.job_status import status_body
from shared.web.job_stream import JobStream
from shared.web.limits import RateLimits
from shared.web.page import render_status_page
from shared.web.result_page import document_response
from shared.web.service import Service
from shared.web.sse import peer_connected

MAX_EVENT_SEQ = 2**63 - 1  # job_events.seq is a bigint
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DOCUMENT_VIEWS = ("document", "preview", "download")


def wants_stream(request: flask.Request) -> bool:
    return request.args.get("stream") in ("1", "true") or "text/event-stream" in request.headers.get("Accept", "")


def wants_page(request: flask.Request) -> bool:
    """A person's browser (Accept: text/html), or ?view=page."""
    if request.args.get("view") == "page":
        return True
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and not wants_stream(request) and request.args.get("view") is None


def opens_stream(request: flask.Request) -> bool:
    return request.args.get("view") not in DOCUMENT_VIEWS and not wants_page(request) and wants_stream(request)


def resume_point(request: flask.Request) -> int:
    """The sequence number to resume after: ASCII digits only (str.isdigit also takes "²",
    which int() refuses) and no larger than the bigint it is compared with."""
    field = "Last-Event-ID" if request.headers.get("Last-Event-ID") else "lastEventId"
    raw = request.headers.get("Last-Event-ID") or request.args.get("lastEventId") or "0"
    if not re.fullmatch(r"[0-9]{1,19}", raw) or int(raw) > MAX_EVENT_SEQ:
        raise ValidationError.of([(field, "must be a whole number (an event's id)")])
    return int(raw)


class StatusViews:
    def __init__(self, service: Service):
        self.service = service
        settings = service.settings
        self.listener = JobEvents(notifier_for(settings.direct_database, settings.db_timeout_seconds))
        self.streams = JobStream(service.pool, self.listener, settings, service.job_body)
        self.list_streams = JobListStream(service.pool, self.listener, settings, service.job_body)
        self.limits = RateLimits.of(service)
        # How the pages name each kind's jobs (its registration's card), and the default kind's
        # words for the links between the pages ("Generate a newsletter").
        self.cards = handlers.kind_cards()
        self.main_card = self.cards.get(handlers.default_kind() or "", {})

    # -- no job named ----------------------------------------------------------------------

    def asset(self, request: flask.Request) -> flask.Response:
        """The pages' JavaScript client, the module clients/js publishes."""
        pages.standalone(request, "asset")
        return pages.asset_response(request.args["asset"])

    def archive(self, request: flask.Request) -> flask.Response:
        pages.standalone(request, "view")
        self.limits.count(request, "status")  # a database read (the cards' data), like the dashboard's
        with self.service.pool.session() as session:
            cards = handlers.kind_cards(session)
        return pages.archive(self.service.settings, cards, handlers.default_kind())

    def job_list(self, request: flask.Request) -> flask.Response:
        """The caller's jobs: one page as JSON, or the live list."""
        caller = self.limits.authenticate(request, required=True)
        self.limits.count(request, "stream" if wants_stream(request) else "status", caller)
        wanted = listing.filter_from_query(request.args, caller)
        if wants_stream(request):
            release = self.streams.slots.take(f"tenant:{caller}")  # a tenant's live lists, whoever opens them
            body = self.list_streams.events(wanted, release, connected=peer_connected(request.environ))
            return flask.Response(body, mimetype="text/event-stream", headers=SSE_HEADERS)
        with self.service.pool.session() as session:
            page = listing.list_jobs(session, wanted)
        return self.service.json(list_body(page, self.service.job_body))

    def metrics(self, request: flask.Request) -> flask.Response:
        """The gauges and recent figures, for a caller with a token (never public: the job id
        is the capability of everything else here, and this names no job)."""
        tenant = self.limits.authenticate(request, required=True)
        self.limits.count(request, "status", tenant)
        window = metrics.window_seconds(request.args.get("window"))
        figures = operations.read_metrics(self.service.pool, self.service.settings, tenant, window)
        return self.service.json(figures, headers={"Cache-Control": "no-store"})

    # -- one job (its id is the capability) ------------------------------------------------

    def job(self, request: flask.Request) -> flask.Response:
        """The job named by ?id: its document, its page, its JSON or its stream."""
        job_id = queue.parse_job_id(request.args.get("id"), field="id")
        # Stream opens and plain reads (the JSON, the page, its documents) are limited apart:
        # a page holds one stream, a poller makes many reads.
        self.limits.count(request, "stream" if opens_stream(request) else "status")
        if request.args.get("view") in DOCUMENT_VIEWS:
            return self.document(job_id, request.args["view"])
        if wants_page(request):
            return self.page(job_id)
        if not wants_stream(request):
            return self.job_json(job_id)
        return self.stream(request, job_id)

    def document(self, job_id: str, view: str) -> flask.Response:
        with self.service.pool.session() as session:
            job = queue.get_job(session, job_id)
            events = queue.list_events(session, job.id) if view == "preview" else []
        return document_response(job, events, view, self.service.settings, flask.request, self.main_card)

    def page(self, job_id: str) -> flask.Response:
        with self.service.pool.session() as session:
            job = queue.get_job(session, job_id)  # an unknown job is a 404, not a page that waits
        settings = self.service.settings
        card = self.cards.get(job.kind, {})
        html, headers = render_status_page(job_id, settings.cancel_url, settings.enqueue_url, card, self.main_card)
        return flask.Response(html, mimetype="text/html", headers=headers)

    def job_json(self, job_id: str) -> flask.Response:
        read = operations.read_job_with_log_lines(self.service.pool, job_id)
        return self.service.json(status_body(read, self.service.job_body))

    def stream(self, request: flask.Request, job_id: str) -> flask.Response:
        with self.service.pool.session() as session:
            job = queue.get_job(session, job_id)
        after = resume_point(request)
        if job.is_terminal and after and after >= job.last_event_seq:
            return flask.Response(status=204)  # nothing missed, nothing to come: EventSource stops here
        release = self.streams.slots.take(f"ip:{self.limits.client_address(request)}")  # public: by address
        body = self.streams.events(
            job, after, fresh=not after, release=release, connected=peer_connected(request.environ)
        )
        return flask.Response(body, mimetype="text/event-stream", headers=SSE_HEADERS)
