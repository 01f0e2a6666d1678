"""Traces with OpenTelemetry: one trace per job, from the enqueue through its Cloud Task to
each attempt in process and the job's database statements.

The W3C `traceparent` of the enqueue is stored with the job (jobs.traceparent) and sent as a
header on every Cloud Task of the job, so the first run, a retry, a redispatch and a run that
a Scheduler tick picked up all join the trace the enqueue began (a Scheduler tick's own
request span is linked to it). A caller that sends `traceparent` to enqueue puts the job in
its own trace.

TRACING (settings): unset, nothing of OpenTelemetry is imported and each hook below costs one
check of a global; the traceparent a caller sent is still stored and passed on to the task,
so Cloud Run's own request traces join up. `cloud-trace`: spans go to Cloud Trace over OTLP
(the Telemetry API, telemetry.googleapis.com, with the runtime's credentials and project; its
service account needs roles/telemetry.tracesWriter: infra/'s `tracing` variable sets this up).
`console`: one JSON line per span on stdout, to see traces locally.

The SDK is imported on the first request, not at start. Spans are exported in batches and
flushed before each response, since Cloud Run throttles the CPU once a response is sent.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from functools import wraps
from typing import TYPE_CHECKING, Any

from shared.core import log

if TYPE_CHECKING:
    from shared.core.db import Session
    from shared.core.jobs import Job

_TRACEPARENT = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")
_NOTHING = nullcontext()

_incoming: ContextVar[str | None] = ContextVar("incoming_traceparent", default=None)
_lock = threading.Lock()
_mode: str | None = None  # what TRACING asked for; the SDK is loaded on the first span
_installed = False  # an exporter given by install(): configure() leaves it alone
_provider: Any = None
_tracer: Any = None
_project: str | None = None  # Cloud Trace's project, for the log lines' trace field


def valid_traceparent(value: str | None) -> str | None:
    """A W3C traceparent (version 00, ids not all zero), or None: an invalid one is ignored."""
    if value is None:
        return None
    value = value.strip().lower()
    return value if _TRACEPARENT.match(value) else None


def configure(mode: str | None) -> None:
    """Take TRACING's value. Nothing is imported here."""
    global _mode
    with _lock:
        if not _installed:
            _mode = mode


def install(exporter: Any) -> None:
    """Send spans to `exporter`, synchronously (tests; or an application's own exporter)."""
    global _installed
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: PLC0415

    with _lock:
        _installed = True
        _start(SimpleSpanProcessor(exporter))


def reset() -> None:
    """Back to off (tests)."""
    global _installed, _mode, _provider, _tracer, _project
    with _lock:
        if _provider is not None:
            _provider.shutdown()
        _installed, _mode, _provider, _tracer, _project = False, None, None, None, None


def _start(processor: Any, resource: dict | None = None) -> None:
    global _provider, _tracer
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415

    if _provider is not None:
        _provider.shutdown()
    _provider = TracerProvider(resource=Resource.create({"service.name": "jobqueue", **(resource or {})}))
    _provider.add_span_processor(processor)
    _tracer = _provider.get_tracer("jobqueue")


def _pipeline(mode: str) -> tuple[Any, dict]:
    """(span processor, resource attributes) for a TRACING mode."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor  # noqa: PLC0415

    if mode == "cloud-trace":
        return BatchSpanProcessor(_cloud_trace_exporter(*_google_credentials())), {"gcp.project_id": _project}
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter  # noqa: PLC0415

    return SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stdout, formatter=_one_line)), {}


CLOUD_TRACE_ENDPOINT = "https://telemetry.googleapis.com/v1/traces"


def _google_credentials() -> tuple[Any, str]:
    global _project
    import google.auth  # noqa: PLC0415

    credentials, project = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    if not project:
        raise RuntimeError("no Google Cloud project found for Cloud Trace (set GOOGLE_CLOUD_PROJECT)")
    _project = project
    return credentials, project


def _cloud_trace_exporter(credentials: Any, project: str) -> Any:
    """OTLP over HTTP to Cloud Trace's Telemetry API, with the runtime's credentials: Google's
    own Cloud Trace exporter for Python is deprecated in favour of this endpoint."""
    from google.auth.transport.requests import AuthorizedSession  # noqa: PLC0415
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

    return OTLPSpanExporter(
        endpoint=CLOUD_TRACE_ENDPOINT,
        session=AuthorizedSession(credentials),
        headers={"x-goog-user-project": project},
        timeout=5,
    )


def _one_line(span: Any) -> str:
    return span.to_json(indent=None) + "\n"


def _active_tracer() -> Any:
    """The tracer, loading the SDK on first use; None when tracing is off."""
    if _tracer is not None or _mode is None:
        return _tracer
    with _lock:
        if _tracer is None and _mode is not None:
            try:
                _start(*_pipeline(_mode))
            except Exception as exc:  # noqa: BLE001 (tracing must never fail a request)
                _turn_off(exc)
    return _tracer


def _turn_off(exc: Exception) -> None:
    global _mode

    log.error("Tracing is off: its exporter could not start", tracing=_mode, error=f"{type(exc).__name__}: {exc}")
    _mode = None


def _context_of(traceparent: str | None) -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator  # noqa: PLC0415

    return TraceContextTextMapPropagator().extract({"traceparent": traceparent}) if traceparent else None


def _current_span() -> Any:
    from opentelemetry import trace  # noqa: PLC0415

    span = trace.get_current_span()
    return span if span.get_span_context().is_valid else None


def _format(span_context: Any) -> str:
    return f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{span_context.trace_flags:02x}"


@contextmanager
def request_span(function: str, traceparent_header: str | None) -> Iterator[None]:
    """Around one request: keep the caller's traceparent for the core, and with tracing on,
    a server span that continues the caller's trace, flushed before the response."""
    incoming = valid_traceparent(traceparent_header)
    token = _incoming.set(incoming)
    tracer = _active_tracer()
    try:
        if tracer is None:
            yield
            return
        from opentelemetry.trace import SpanKind  # noqa: PLC0415

        with tracer.start_as_current_span(
            function, context=_context_of(incoming), kind=SpanKind.SERVER, attributes={"faas.name": function}
        ):
            yield
    finally:
        _incoming.reset(token)
        flush()


def flush() -> None:
    if _provider is not None:
        _provider.force_flush(2000)


def span(name: str, **attributes: Any):
    """A span under the current one (a no-op context when tracing is off)."""
    tracer = _active_tracer()
    if tracer is None:
        return _NOTHING
    return tracer.start_as_current_span(name, attributes={k: v for k, v in attributes.items() if v is not None})


def statement(name: str):
    """A database statement's span, only inside a traced piece of work: the lease watcher's
    heartbeats and lease checks, on a thread with no span, make none."""
    if _tracer is None or _current_span() is None:
        return _NOTHING
    from opentelemetry.trace import SpanKind  # noqa: PLC0415

    return _tracer.start_as_current_span(
        name, kind=SpanKind.CLIENT, attributes={"db.system": "postgresql", "db.operation.name": name}
    )


def current_traceparent() -> str | None:
    """The trace this work belongs to: the current span's with tracing on, else the caller's."""
    if _tracer is not None and (active := _current_span()) is not None:
        return _format(active.get_span_context())
    return _incoming.get()


def log_fields() -> dict:
    """With Cloud Trace on, the fields that make Cloud Logging show a log line in its trace."""
    if _tracer is None or _project is None or (active := _current_span()) is None:
        return {}
    context = active.get_span_context()
    return {
        "logging.googleapis.com/trace": f"projects/{_project}/traces/{context.trace_id:032x}",
        "logging.googleapis.com/spanId": f"{context.span_id:016x}",
        "logging.googleapis.com/trace_sampled": context.trace_flags.sampled,
    }


def remember_trace(session: Session, job: Job) -> Job:
    """Store the current trace with a job that has none (one UPDATE, only when there is a trace)."""
    traceparent = current_traceparent()
    if traceparent is None or job.traceparent is not None:
        return job
    from shared.core.jobs import Job  # noqa: PLC0415

    row = session.row("record_traceparent", id=job.id, traceparent=traceparent)
    return Job.from_row(row) if row else job


def annotate(job: Job) -> None:
    """Name the job on the current span."""
    if _tracer is not None and (active := _current_span()) is not None:
        active.set_attributes(job_attributes(job))


def job_attributes(job: Job) -> dict:
    return {
        "jobqueue.job.id": job.id,
        "jobqueue.tenant": job.tenant,
        "jobqueue.job.kind": job.kind,
        "jobqueue.job.attempt": job.attempts,
    }


def _trace_id(traceparent: str) -> int:
    return int(traceparent[3:35], 16)


def task_headers(job: Job) -> dict[str, str]:
    """The traceparent header of the job's Cloud Tasks: the process invocation joins its trace."""
    return {"traceparent": job.traceparent} if job.traceparent else {}


def traced_run(run: Callable) -> Callable:
    """Decorates Runner._run(job): the attempt is a span in the job's own trace (the
    one its enqueue began), linked to the request that ran it when that is another trace (a
    Scheduler tick's)."""

    @wraps(run)
    def traced(self, job: Job):
        tracer = _active_tracer()
        if tracer is None:
            return run(self, job)
        from opentelemetry.trace import Link  # noqa: PLC0415

        request = _current_span()
        parent, links = None, []  # by default, under the request that runs it
        if job.traceparent and (request is None or request.get_span_context().trace_id != _trace_id(job.traceparent)):
            parent = _context_of(job.traceparent)
            links = [Link(request.get_span_context())] if request is not None else []
        with tracer.start_as_current_span("jobqueue.run", context=parent, links=links, attributes=job_attributes(job)):
            return run(self, job)

    return traced


log.add_fields(log_fields)
