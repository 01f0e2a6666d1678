"""The job lifecycle, one function per step, each over one named SQL statement.

    enqueue -> claim -> heartbeat / progress / log -> complete | fail (retry) | cancelled
                                    ^                                   |
                  sweep: stale heartbeat -> requeue or fail ------------+

Every write to a running job presents the lease token its claim handed out; a write whose
lease is gone raises LeaseLost and changes nothing.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from shared.core.db import Session
from shared.core.errors import LeaseLost, NotFound, ValidationError
from shared.core.handlers import HandlerRegistry
from shared.core.jobs import Job, JobStatus
from shared.core.settings import DEFAULT_TENANT

MAX_PRIORITY = 1_000_000
MAX_ATTEMPTS_LIMIT = 100
MAX_KEY_LENGTH = 200
SWEEP_BATCH = 500


@dataclass(frozen=True)
class Lease:
    """What a claim hands out: the job and the token that proves we still own it."""

    job_id: str
    token: str

    @classmethod
    def of(cls, job: Job) -> Lease:
        return cls(job.id, job.worker_token)


class CancelOutcome(StrEnum):
    CANCELLED = "cancelled"  # it was queued: cancelled now
    REQUESTED = "cancel_requested"  # it is running: its invocation will stop it
    ALREADY_CANCELLED = "already_cancelled"
    ALREADY_FINISHED = "already_finished"  # completed or failed: nothing to cancel


@dataclass(frozen=True)
class Event:
    seq: int
    kind: str
    data: dict
    created_at: datetime


def parse_job_id(value: Any, field: str = "id") -> str:
    """A job id in canonical form, or a ValidationError naming the field."""
    if not isinstance(value, str):
        raise ValidationError.of([(field, "must be a job id (a UUID string)")])
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValidationError.of([(field, f"{value[:60]!r} is not a valid job id (a UUID)")]) from None


def parse_time(value: Any) -> datetime:
    """An ISO-8601 time; one without an offset is taken as UTC."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        raise TypeError("not a time")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def callback_url_problem(url: Any) -> str | None:
    """Webhooks go to https URLs; plain http only to this machine, for development."""
    if not isinstance(url, str) or len(url) > 2000:
        return "must be an https URL"
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1", "::1"):
        return None
    return "must be an https URL (http only for localhost)"


def _enqueue_problems(
    kind: Any,
    payload: Any,
    priority: Any,
    run_at: Any,
    max_attempts: Any,
    idempotency_key: Any,
    callback_url: Any,
    max_attempts_limit: int = MAX_ATTEMPTS_LIMIT,
) -> tuple[list[tuple[str, str]], datetime | None]:
    problems: list[tuple[str, str]] = []
    if callback_url is not None and (problem := callback_url_problem(callback_url)):
        problems.append(("callbackUrl", problem))
    if not isinstance(kind, str) or not 1 <= len(kind) <= 100:
        problems.append(("kind", "must be a non-empty string of at most 100 characters"))
    if not isinstance(payload, dict):
        problems.append(("payload", "must be a JSON object"))
    if not _whole(priority) or not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        problems.append(("priority", f"must be a whole number from -{MAX_PRIORITY} to {MAX_PRIORITY}"))
    if not _whole(max_attempts) or not 1 <= max_attempts <= max_attempts_limit:
        problems.append(("maxAttempts", f"must be a whole number from 1 to {max_attempts_limit}"))
    if idempotency_key is not None and (
        not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= MAX_KEY_LENGTH
    ):
        problems.append(("idempotencyKey", f"must be a string of 1 to {MAX_KEY_LENGTH} characters"))
    when = None
    if run_at is not None:
        try:
            when = parse_time(run_at)
        except (TypeError, ValueError):
            problems.append(("runAt", "must be an ISO-8601 time such as 2025-01-07T09:00:00Z"))
    return problems, when


def enqueue(
    session: Session,
    registry: HandlerRegistry,
    *,
    kind: str,
    payload: dict,
    priority: int = 0,
    run_at: datetime | str | None = None,
    max_attempts: int = 3,
    idempotency_key: str | None = None,
    callback_url: str | None = None,
    tenant: str = DEFAULT_TENANT,
    max_attempts_limit: int = MAX_ATTEMPTS_LIMIT,
) -> tuple[Job, bool]:
    """Queue a job. Returns (job, created); created is False when the key was seen before.

    Everything is checked before anything is written, and every problem is named at once.
    `max_attempts_limit` is the deployment's bound on maxAttempts (MAX_ATTEMPTS_LIMIT).
    """
    problems, when = _enqueue_problems(
        kind, payload, priority, run_at, max_attempts, idempotency_key, callback_url, max_attempts_limit
    )
    if not problems:
        try:
            registry.validate(kind, payload, session)
        except ValidationError as exc:
            problems.extend((d["field"], d["message"]) for d in exc.details)
    if problems:
        raise ValidationError.of(problems)
    row = session.row(
        "enqueue_job",
        tenant=tenant,
        kind=kind,
        payload=json.dumps(payload),
        priority=priority,
        run_at=when,
        max_attempts=max_attempts,
        idempotency_key=idempotency_key,
        callback_url=callback_url,
    )
    if row is not None:
        return Job.from_row(row), True
    existing = session.row("find_job_by_idempotency_key", tenant=tenant, idempotency_key=idempotency_key)
    if existing is None:  # the keyed job was archived between the two statements
        return enqueue(
            session, registry, kind=kind, payload=payload, priority=priority,
            run_at=when, max_attempts=max_attempts, idempotency_key=idempotency_key, callback_url=callback_url,
            tenant=tenant, max_attempts_limit=max_attempts_limit,
        )  # fmt: skip
    return Job.from_row(existing), False


def claim_next(session: Session) -> Job | None:
    """The next due job, now running under a fresh lease; None when nothing is due."""
    row = session.row("claim_next_job")
    return Job.from_row(row) if row else None


def claim_named(session: Session, job_id: str) -> Job | None:
    """That job, now running under a fresh lease; None unless it was queued and due."""
    row = session.row("claim_named_job", id=job_id)
    return Job.from_row(row) if row else None


def _fenced(row: dict | None, lease: Lease) -> dict:
    if row is None:
        raise LeaseLost(f"Job {lease.job_id}: this invocation no longer holds its lease")
    return row


def record_heartbeat(session: Session, lease: Lease) -> bool:
    """Proof of life. Returns whether a cancel was requested."""
    row = session.row("record_heartbeat", id=lease.job_id, token=lease.token)
    return bool(_fenced(row, lease)["cancel_requested"])


def check_lease(session: Session, lease: Lease) -> bool:
    """A read: is the lease still ours (LeaseLost if not), and was a cancel requested?"""
    row = session.row("check_lease", id=lease.job_id, token=lease.token)
    return bool(_fenced(row, lease)["cancel_requested"])


def _leases_params(leases: list[Lease]) -> dict:
    ordered = sorted(leases, key=lambda lease: lease.job_id)
    return {"ids": [lease.job_id for lease in ordered], "tokens": [lease.token for lease in ordered]}


def check_leases(session: Session, leases: list[Lease]) -> dict[str, bool]:
    """One read for many running jobs: {job id: cancel requested} for each lease still held;
    a job missing from the answer lost its lease."""
    rows = session.rows("check_leases", **_leases_params(leases))
    return {row["id"]: bool(row["cancel_requested"]) for row in rows}


def record_heartbeats(session: Session, leases: list[Lease]) -> dict[str, bool]:
    """One heartbeat statement for many running jobs; answers like check_leases."""
    rows = session.rows("record_heartbeats", **_leases_params(leases))
    return {row["id"]: bool(row["cancel_requested"]) for row in rows}


def record_progress(session: Session, lease: Lease, percent: int | None, step: str | None, message: str | None) -> int:
    row = session.row(
        "record_progress", id=lease.job_id, token=lease.token, progress=percent, step=step, message=message
    )
    return _fenced(row, lease)["seq"]


def append_event(session: Session, lease: Lease, kind: str, data: dict) -> int:
    row = session.row("append_event", id=lease.job_id, token=lease.token, kind=kind, data=json.dumps(data))
    return _fenced(row, lease)["seq"]


def complete(session: Session, lease: Lease, result: Any) -> Job:
    row = session.row("complete_job", id=lease.job_id, token=lease.token, result=json.dumps(result))
    return Job.from_row(_fenced(row, lease))


def retry_delay_seconds(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: between half and all of base * 2^(attempt-1), capped."""
    ceiling = min(cap, base * 2 ** max(attempt - 1, 0))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def fail(session: Session, lease: Lease, error: str, retry_delay: float, retryable: bool = True) -> Job:
    """Fail this attempt: requeued at now + retry_delay while attempts remain, else failed."""
    row = session.row(
        "fail_attempt",
        id=lease.job_id,
        token=lease.token,
        error=error[:4000],
        retry_delay_seconds=retry_delay,
        retryable=retryable,
    )
    return Job.from_row(_fenced(row, lease))


def finish_cancelled(session: Session, lease: Lease) -> Job:
    row = session.row("finish_cancelled", id=lease.job_id, token=lease.token)
    return Job.from_row(_fenced(row, lease))


def get_job(session: Session, job_id: str) -> Job:
    row = session.row("get_job", id=job_id)
    if row is None:
        raise NotFound()
    return Job.from_row(row)


def list_events(session: Session, job_id: str, after_seq: int = 0, limit: int = 1000) -> list[Event]:
    rows = session.rows("list_events", id=job_id, after_seq=after_seq, max_events=limit)
    return [Event(r["seq"], r["kind"], r["data"], r["created_at"]) for r in rows]


def waiting_jobs(session: Session, waited_seconds: float, limit: int = SWEEP_BATCH) -> list[Job]:
    """Queued jobs still waiting `waited_seconds` after their run_at: a task may be lost."""
    return [
        Job.from_row(row) for row in session.rows("find_waiting_jobs", waited_seconds=waited_seconds, batch_size=limit)
    ]


def cancel(session: Session, job_id: str) -> tuple[CancelOutcome, Job]:
    """Cancel a job: at once if queued, by request if running. Twice is harmless."""
    row = session.row("request_cancel", id=job_id)
    if row is not None:
        job = Job.from_row(row)
        outcome = CancelOutcome.CANCELLED if job.job_status == JobStatus.CANCELLED else CancelOutcome.REQUESTED
        return outcome, job
    job = get_job(session, job_id)
    if job.job_status == JobStatus.CANCELLED:
        return CancelOutcome.ALREADY_CANCELLED, job
    if job.job_status == JobStatus.RUNNING:  # a cancel was requested before this one
        return CancelOutcome.REQUESTED, job
    return CancelOutcome.ALREADY_FINISHED, job


@dataclass
class SweepReport:
    requeued: int = 0
    failed: int = 0
    cancelled: int = 0
    archived: int = 0
    requeued_jobs: tuple[Job, ...] = ()  # to dispatch again
    finished_jobs: tuple[Job, ...] = ()  # failed or cancelled: their webhooks are due

    def to_json(self) -> dict:
        return {
            "requeued": self.requeued,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "archived": self.archived,
        }


def sweep(session: Session, stalled_after_seconds: float, retention_days: int, max_batches: int = 100) -> SweepReport:
    """Recover stalled running jobs, then archive old finished ones, in bounded batches."""
    report = SweepReport()
    requeued: list[Job] = []
    finished: list[Job] = []
    for _ in range(max_batches):
        rows = session.rows("sweep_stalled", stalled_after_seconds=stalled_after_seconds, batch_size=SWEEP_BATCH)
        for row in rows:
            job = Job.from_row(row)
            if job.job_status == JobStatus.QUEUED:
                report.requeued += 1
                requeued.append(job)
            else:
                finished.append(job)
                if job.job_status == JobStatus.FAILED:
                    report.failed += 1
                else:
                    report.cancelled += 1
        if len(rows) < SWEEP_BATCH:
            break
    report.requeued_jobs = tuple(requeued)
    report.finished_jobs = tuple(finished)
    for _ in range(max_batches):
        archived = session.row("archive_finished", retention_days=retention_days, batch_size=SWEEP_BATCH)["archived"]
        report.archived += archived
        if archived < SWEEP_BATCH:
            break
    return report
