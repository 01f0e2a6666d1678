"""The queue's figures: the fields of the log lines that Cloud Logging turns into metrics, the
gauges sweep logs on each tick, and the snapshot the status function's metrics view answers.

Cloud Logging counts log lines (log-based metrics in infra/monitoring.tf); what a log line
cannot say (how many jobs wait, how old the oldest is) sweep reads in one statement and logs
as one line, `event: queue.gauges`. Every line a metric reads carries an `event` field, so
the filters in infra/ match on a stable name rather than on a message's wording; a test
(tests/test_monitoring.py) holds each filter to a line the code writes.

    event           written by   fields the metrics read
    job.started     process      kind, waitSeconds (due to started)
    job.ended       process      kind, outcome (completed, failed, retrying, cancelled), runSeconds
    job.swept       sweep        kind, outcome (requeued, failed, cancelled)
    queue.gauges    sweep        queued, scheduled, running, oldestQueuedAgeSeconds, oldestHeartbeatAgeSeconds
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.core import log
from shared.core.db import Session
from shared.core.errors import ValidationError
from shared.core.jobs import Job, JobStatus
from shared.core.queue import whole_number

STARTED = "job.started"
ENDED = "job.ended"
SWEPT = "job.swept"
GAUGES = "queue.gauges"
EVENTS = (STARTED, ENDED, SWEPT, GAUGES)

DEFAULT_WINDOW_SECONDS = 3600
MIN_WINDOW_SECONDS = 60
MAX_WINDOW_SECONDS = 7 * 86400


def window_seconds(raw: str | None) -> int:
    """The metrics view's `window` parameter: whole seconds, from a minute to a week."""
    if raw is None:
        return DEFAULT_WINDOW_SECONDS
    number = whole_number(raw)
    if number is None or not MIN_WINDOW_SECONDS <= number <= MAX_WINDOW_SECONDS:
        raise ValidationError.of(
            [("window", f"must be whole seconds from {MIN_WINDOW_SECONDS} to {MAX_WINDOW_SECONDS}")]
        )
    return number


def _seconds(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return round(max((later - earlier).total_seconds(), 0.0), 3)


def started_fields(job: Job) -> dict:
    """For "Job started": the wait is from when the job was due (its runAt: the enqueue time
    unless it was scheduled later, or the retry time) to its claim, both on the database's clock."""
    return {
        "event": STARTED,
        "kind": job.kind,
        "tenant": job.tenant,
        "attempt": job.attempts,
        "waitSeconds": _seconds(job.processed_at, job.run_at),
    }


def ended_fields(job: Job, outcome: str) -> dict:
    """For the line that ends an attempt: its run time is from the claim to the end (the
    ending statement stamps updated_at), both on the database's clock."""
    return {
        "event": ENDED,
        "outcome": str(outcome),
        "kind": job.kind,
        "tenant": job.tenant,
        "attempt": job.attempts,
        "runSeconds": _seconds(job.updated_at, job.processed_at),
    }


def log_swept(job: Job) -> None:
    """One line per job sweep took from a dead invocation (requeued, failed or cancelled)."""
    outcome = "requeued" if job.job_status == JobStatus.QUEUED else str(job.job_status)
    log.warning(
        "Job swept: its heartbeat stopped",
        jobId=job.id,
        event=SWEPT,
        outcome=outcome,
        kind=job.kind,
        tenant=job.tenant,
        attempt=job.attempts,
    )


@dataclass(frozen=True)
class Gauges:
    queued: int  # due and waiting
    scheduled: int  # queued with a runAt still ahead
    running: int
    oldest_queued_age_seconds: float  # how long the oldest due job has waited; 0 when none
    oldest_heartbeat_age_seconds: float  # the oldest heartbeat of a running job; 0 when none

    def to_json(self) -> dict:
        return {
            "queued": self.queued,
            "scheduled": self.scheduled,
            "running": self.running,
            "oldestQueuedAgeSeconds": round(self.oldest_queued_age_seconds, 3),
            "oldestHeartbeatAgeSeconds": round(self.oldest_heartbeat_age_seconds, 3),
        }


def read_gauges(session: Session, tenant: str | None = None) -> Gauges:
    """The gauges of the whole queue, or of one tenant's jobs."""
    row = session.row("read_queue_gauges", tenant=tenant)
    return Gauges(
        queued=row["queued"],
        scheduled=row["scheduled"],
        running=row["running"],
        oldest_queued_age_seconds=float(row["oldest_queued_age_seconds"]),
        oldest_heartbeat_age_seconds=float(row["oldest_heartbeat_age_seconds"]),
    )


def log_gauges(gauges: Gauges) -> None:
    """The one line per sweep tick that the gauge metrics read (and whose absence means that
    sweep stopped running: an alert in infra/)."""
    log.info("Queue gauges", event=GAUGES, **gauges.to_json())


def _percentiles(values: list[float] | None) -> dict | None:
    if not values:
        return None
    return {name: round(value, 3) for name, value in zip(("p50", "p95", "p99"), values)}


def read_recent(session: Session, window_seconds: float, tenant: str | None = None) -> dict[str, dict]:
    """By kind: the jobs that finished in the window, by status, with percentiles of their
    wait and run time (None when no job of the kind ever started)."""
    rows = session.rows("read_recent_job_figures", window_seconds=window_seconds, tenant=tenant)
    return {
        row["kind"]: {
            "completed": row["completed"],
            "failed": row["failed"],
            "cancelled": row["cancelled"],
            "waitSeconds": _percentiles(row["wait_seconds"]),
            "runSeconds": _percentiles(row["run_seconds"]),
        }
        for row in rows
    }
