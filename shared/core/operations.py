"""What each function does, as one named operation over the lifecycle and its follow-ups.

The HTTP adapters (functions/*/main.py) read a request, call one of these, and write the
response; the order of the steps, and what follows each transition (a Cloud Task, a
webhook), lives here, where it can be read and tested without HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.core import queue
from shared.core.db import Pool
from shared.core.dispatch import Dispatcher
from shared.core.handlers import HandlerRegistry
from shared.core.jobs import Job, JobStatus
from shared.core.queue import CancelOutcome, SweepReport
from shared.core.runner import Outcome, Runner, RunOutcome
from shared.core.settings import DEFAULT_TENANT, Settings


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
    with pool.session() as session:
        if options.get("rerun_of") is not None:
            payload, options = queue.rerun_request(
                session, options["rerun_of"], options.get("tenant", DEFAULT_TENANT), payload, options
            )
        job, created = queue.enqueue(session, registry, payload=payload, **options)
    dispatch = None
    if dispatcher.tasks_enabled and job.job_status == JobStatus.QUEUED:
        dispatch = dispatcher.dispatch(job)
    return Enqueued(job, created, dispatch)


def cancel_and_notify(pool: Pool, dispatcher: Dispatcher, job_id: str, tenant: str) -> tuple[CancelOutcome, Job]:
    """Cancel the tenant's job; a queued one ends now and its webhook goes out. A running one
    ends in its own invocation, which sends the webhook then."""
    with pool.session() as session:
        outcome, job = queue.cancel(session, job_id, tenant)
    if outcome is CancelOutcome.CANCELLED:
        dispatcher.notify(job)
    return outcome, job


def run_and_follow_up(runner: Runner, dispatcher: Dispatcher, job_id: str | None) -> RunOutcome | None:
    """Run the named job (a Cloud Task's) or the next due one (a Scheduler tick's) to its end;
    then a retry gets its task and a finished job its webhook. None: nothing was claimed."""
    ran = runner.run_next() if job_id is None else runner.run_named(job_id)
    if ran is not None and ran.outcome is not Outcome.LOST:
        dispatcher.follow_up(ran.job)
    return ran


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
    purged: int = 0  # archived jobs deleted for good (ARCHIVE_RETENTION_DAYS)

    def to_json(self) -> dict:
        return {**self.report.to_json(), "purged": self.purged, "redispatched": self.redispatched}


def sweep_and_redispatch(pool: Pool, dispatcher: Dispatcher, settings: Settings) -> Swept:
    """Recover stalled jobs, archive old ones and purge the archive's oldest; then dispatch
    what was requeued, send the webhooks of what was finished, and push a new task for every
    job that waited past REDISPATCH_AFTER_SECONDS (its task may be lost)."""
    with pool.session() as session:
        report = queue.sweep(session, settings.stalled_after_seconds, settings.retention_days)
        purged = queue.purge_archive(session, settings.archive_retention_days)
        waiting = queue.waiting_jobs(session, settings.redispatch_after_seconds) if dispatcher.tasks_enabled else []
    for job in (*report.requeued_jobs, *report.finished_jobs):
        dispatcher.follow_up(job)
    requeued = {job.id for job in report.requeued_jobs}
    redispatched = dispatcher.redispatch_waiting([job for job in waiting if job.id not in requeued])
    return Swept(report, redispatched, purged)
