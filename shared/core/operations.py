"""What each function does, as one named operation over the lifecycle and its follow-ups.

The HTTP adapters (functions/*/main.py) read a request, call one of these, and write the
response; the order of the steps, and what follows each transition (a Cloud Task, a
webhook), lives here, where it can be read and tested without HTTP.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.core import log, metrics, queue, tracing
from shared.core.db import Pool
from shared.core.dispatch import Dispatcher
from shared.core.errors import DatabaseUnavailable, JobQueueError
from shared.core.handlers import HandlerRegistry
from shared.core.jobs import Job, JobStatus, iso
from shared.core.outbox import Drained
from shared.core.queue import CancelOutcome
from shared.core.settings import ADMIN_TENANT, DEFAULT_TENANT, Settings

if TYPE_CHECKING:  # the runner and the maintenance services load where they run: process, sweep
    from shared.core.maintenance import SweepReport
    from shared.core.runner import Runner, RunOutcome


@dataclass(frozen=True)
class Enqueued:
    job: Job
    created: bool  # False: the idempotency key was seen before, this is that job
    dispatch: str | None  # "sent", "pending" (the Scheduler path runs it), or None without Cloud Tasks


def enqueue_and_dispatch(
    pool: Pool, registry: HandlerRegistry, dispatcher: Dispatcher, payload: dict, **options
) -> Enqueued:
    """Queue a job (or a re-run of one, with `rerun_of`), then push its Cloud Task. Also on a
    repeated key: the task is named after the job, so this adds nothing when the first push
    worked and heals it when not."""
    with tracing.span("jobqueue.enqueue"), pool.session() as session:
        if options.get("rerun_of") is not None:
            payload, options = queue.rerun_request(
                session, options["rerun_of"], options.get("tenant", DEFAULT_TENANT), payload, options
            )
        job, created = queue.enqueue(
            session, registry, payload=payload, check_callback=dispatcher.callback_url_problem, **options
        )
        job = tracing.remember_trace(session, job)  # its tasks and attempts join this trace
        tracing.annotate(job)
    dispatch = None
    if dispatcher.tasks_enabled and job.job_status == JobStatus.QUEUED:
        dispatch = dispatcher.dispatch(job)
    return Enqueued(job, created, dispatch)


def enqueue_many_and_dispatch(
    pool: Pool,
    registry: HandlerRegistry,
    dispatcher: Dispatcher,
    requests: list[tuple[dict, dict]],
    tenant: str,
    max_attempts_limit: int,
) -> list[Enqueued | JobQueueError]:
    """Queue many jobs in one transaction (queue.enqueue_many), then push their Cloud Tasks
    concurrently, after the commit: the answer per job, in order, or that job's error."""
    with tracing.span("jobqueue.enqueue_many", **{"jobqueue.jobs": len(requests)}), pool.session() as session:
        answers = queue.enqueue_many(
            session, registry, requests, tenant=tenant, traceparent=tracing.current_traceparent(),
            check_callback=dispatcher.callback_url_problem, max_attempts_limit=max_attempts_limit,
        )  # fmt: skip
    queued = [answer[0] for answer in answers if isinstance(answer, tuple) and answer[0].job_status == JobStatus.QUEUED]
    pushed = dispatcher.dispatch_many(queued) if dispatcher.tasks_enabled else {}
    return [
        answer if isinstance(answer, JobQueueError) else Enqueued(answer[0], answer[1], pushed.get(answer[0].id))
        for answer in answers
    ]


def cancel_and_notify(pool: Pool, dispatcher: Dispatcher, job_id: str, tenant: str) -> tuple[CancelOutcome, Job]:
    """Cancel the tenant's job (another tenant's is NotFound); a queued one ends now, and its
    webhook is in the outbox. With Cloud Tasks on, it is pushed as a task now (a call to
    Cloud Tasks, never to the callback target); without, the next process invocation or
    sweep tick sends it: a cancel never waits on a receiver. A running job ends in its own
    invocation, which drains its webhook then."""
    with pool.session() as session:
        outcome, job = queue.cancel(session, job_id, tenant)
    if outcome is CancelOutcome.CANCELLED and job.callback_url and dispatcher.tasks_enabled:
        drain_webhooks(pool, dispatcher, job.id, only_that_job=True)
    return outcome, job


def run_and_follow_up(runner: Runner, dispatcher: Dispatcher, job_id: str | None) -> RunOutcome | None:
    """Run the named job (a Cloud Task's) or the next due one (a Scheduler tick's) to its end;
    then a retry gets its task, and the outbox is drained, this job's webhook first, for at
    most WEBHOOK_DRAIN_SECONDS, before the invocation answers (after the answer, Cloud Run
    throttles the CPU). An invocation that ran nothing drains too: that is how a Scheduler
    tick retries deliveries. None: nothing was claimed."""
    from shared.core.runner import Outcome  # noqa: PLC0415 (loaded already: the caller built the runner)

    ran = runner.run_next() if job_id is None else runner.run_named(job_id)
    if ran is not None and ran.outcome is not Outcome.LOST:
        dispatcher.follow_up(ran.job)
    drain_webhooks(runner.pool, dispatcher, ran.job.id if ran is not None and ran.job.callback_url else None)
    return ran


def drain_webhooks(
    pool: Pool, dispatcher: Dispatcher, first_job_id: str | None = None, only_that_job: bool = False
) -> Drained:
    """The outbox, for at most WEBHOOK_DRAIN_SECONDS: `first_job_id`'s delivery first. Never
    fails the invocation: a database blip leaves the rows for the next drain (a claimed row
    comes back when its lease ends), and the job's own answer is already decided."""
    started = time.monotonic()
    seconds = dispatcher.settings.webhook_drain_seconds
    drained = Drained()
    try:
        if first_job_id is not None:
            drained = dispatcher.drain_webhooks(pool, seconds, job_id=first_job_id)
        if only_that_job:
            return drained
        return drained + dispatcher.drain_webhooks(pool, seconds - (time.monotonic() - started))
    except DatabaseUnavailable:
        log.warning("Webhook outbox not drained: the database is unavailable; the next drain sends them")
        return drained


def skipped_reason(job: Job) -> str:
    """Why a named job was not run: at-least-once delivery brought its task again."""
    if job.job_status == JobStatus.QUEUED:
        return "not_due"
    if job.job_status == JobStatus.RUNNING:
        return "running"
    return "finished"


@dataclass(frozen=True)
class Swept:
    report: SweepReport
    redispatched: int

    def to_json(self) -> dict:
        return {**self.report.to_json(), "purged": self.report.purged, "redispatched": self.redispatched}


def sweep_and_redispatch(pool: Pool, dispatcher: Dispatcher, settings: Settings) -> Swept:
    """The maintenance services, in order (shared/core/maintenance/: rescue stalled jobs,
    archive old ones, prune the outbox, purge the archive's oldest, find the jobs that waited
    past REDISPATCH_AFTER_SECONDS); log each job swept and the queue's gauges; then dispatch
    what was requeued, push a new task for each waiting job (its task may be lost), and last,
    with the time bound WEBHOOK_DRAIN_SECONDS, drain the webhook outbox (the jobs it finished
    wrote theirs in the same transaction): however slow the receivers, the queue's own work is
    done first and the tick ends in time."""
    from shared.core import maintenance  # noqa: PLC0415 (only sweep needs them)
    from shared.core.maintenance.redispatcher import redispatch  # noqa: PLC0415

    redispatch_after = settings.redispatch_after_seconds if dispatcher.tasks_enabled else None
    with pool.session() as session:
        report = maintenance.sweep(
            session,
            settings.stalled_after_seconds,
            settings.retention_days,
            settings.archive_retention_days,
            redispatch_after,
        )
        gauges = metrics.read_gauges(session)
    metrics.log_gauges(gauges)  # each tick, so that its absence says sweep stopped
    for job in (*report.requeued_jobs, *report.finished_jobs):
        metrics.log_swept(job)
    for job in report.requeued_jobs:
        dispatcher.follow_up(job)
    redispatched = redispatch(dispatcher, report.waiting_jobs, {job.id for job in report.requeued_jobs})
    drain_webhooks(pool, dispatcher)
    return Swept(report, redispatched)


@dataclass(frozen=True)
class JobWithLogLines:
    job: Job
    log_lines: list[dict]  # [{"seq", "level", "message", "at"}], oldest first
    message: str | None  # the newest status message
    preview: Any  # the newest preview event's data (its text so far and format), if any


def read_job_with_log_lines(pool: Pool, job_id: str) -> JobWithLogLines:
    """A job with its log lines, and what its stream shows beside them (the newest message and
    preview), read on one connection; NotFound for an unknown job."""
    with pool.session() as session:
        job = queue.get_job(session, job_id)
        events = queue.list_events(session, job_id)
        message, preview = queue.latest_message_and_preview(session, job_id)
    lines = [
        {"seq": e.seq, "level": e.data.get("level", "info"), "message": e.data.get("message"), "at": iso(e.created_at)}
        for e in events
        if e.kind == "log"
    ]
    return JobWithLogLines(job, lines, message, preview)


def read_metrics(pool: Pool, settings: Settings, tenant: str, window_seconds: float) -> dict:
    """The status function's metrics view: the gauges now, and by kind the jobs that finished
    in the last `window_seconds` with percentiles of their wait and run time. ADMIN_TOKEN sees
    the whole queue, and so does API_TOKEN while it is the only tenant (a single-tenant
    deployment's operator); any other tenant sees its own jobs only, since another caller's
    volume is not its business."""
    single_tenant = all(name in (DEFAULT_TENANT, ADMIN_TENANT) for name, _ in settings.api_tokens)
    sees_all = tenant == ADMIN_TENANT or (tenant == DEFAULT_TENANT and single_tenant)
    scope = None if sees_all else tenant
    with pool.session() as session:
        gauges = metrics.read_gauges(session, scope)
        recent = metrics.read_recent(session, window_seconds, scope)
    return {"tenant": scope, **gauges.to_json(), "windowSeconds": window_seconds, "byKind": recent}
