"""The job lifecycle, one function per step, each over one named SQL statement.

    enqueue -> claim -> heartbeat / progress / log -> complete | fail (retry) | cancelled
                                    ^                                   |
                  sweep: stale heartbeat -> requeue or fail ------------+  (maintenance/rescuer.py)

Every write to a running job presents the lease token its claim handed out; a write whose
lease is gone raises LeaseLost and changes nothing.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from shared.core import netguard
from shared.core.db import Session
from shared.core.errors import Conflict, IdempotencyConflict, JobQueueError, LeaseLost, NotFound, ValidationError
from shared.core.handlers import HandlerRegistry
from shared.core.jobs import Job, JobStatus
from shared.core.settings import ADMIN_TENANT, DEFAULT_TENANT, MAX_ATTEMPTS
from shared.core.storable import json_problems, text_problem

MAX_PRIORITY = 1_000_000
MAX_KEY_LENGTH = 200


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
    """A job id in canonical form, or a ValidationError naming the field.

    The seed's ids were sequential integers; here an id is a random UUID, because it is the
    capability for the job's status page and a sequential id could be guessed."""
    if _whole(value) or (isinstance(value, str) and value.strip().isdigit()):
        raise ValidationError.of([(field, "must be a job id: a random UUID string, not a sequential number")])
    if not isinstance(value, str):
        raise ValidationError.of([(field, "must be a job id (a UUID string)")])
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValidationError.of([(field, f"{value[:60]!r} is not a valid job id (a UUID)")]) from None


def parse_time(value: Any) -> datetime:
    """An ISO-8601 time, in UTC; one without an offset is taken as UTC. OverflowError for a
    time that UTC cannot hold (0001-01-01T00:00:00+05:00 is in the year 0)."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        raise TypeError("not a time")
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def whole_number(raw: str) -> int | None:
    """A query parameter's ASCII digits as a number, else None (str.isdigit also takes "²",
    which int() refuses). Nine digits at most: every such parameter's bound is far below."""
    return int(raw) if re.fullmatch(r"[0-9]{1,9}", raw) else None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def callback_url_problem(url: Any) -> str | None:
    """Webhooks go to https URLs of public hosts (shared.core.netguard). The enqueue operation
    passes its own check instead, which knows the settings (loopback in development)."""
    return netguard.url_problem(url)


def _unstorable(**strings: Any) -> list[tuple[str, str]]:
    return [
        (field, problem)
        for field, value in strings.items()
        if isinstance(value, str) and (problem := text_problem(value))
    ]


def _checked(
    session: Session,
    registry: HandlerRegistry,
    kind: Any,
    payload: Any,
    priority: Any,
    run_at: Any,
    max_attempts: Any,
    idempotency_key: Any,
    callback_url: Any,
    check_callback: Callable[[Any], str | None] = callback_url_problem,
    max_attempts_limit: int = MAX_ATTEMPTS,
) -> datetime | None:
    """The job's run_at, once every field and the kind's own checks pass; else a
    ValidationError naming every problem at once."""
    problems: list[tuple[str, str]] = []
    if callback_url is not None and (problem := check_callback(callback_url)):
        problems.append(("callbackUrl", problem))
    problems.extend(_unstorable(kind=kind, idempotencyKey=idempotency_key, callbackUrl=callback_url))
    if isinstance(payload, dict):
        problems.extend(json_problems(payload))
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
        except OverflowError:
            problems.append(("runAt", "must be a time between the years 1 and 9999 in UTC"))
    if not problems:
        try:
            registry.validate(kind, payload, session)
        except ValidationError as exc:
            problems.extend((d["field"], d["message"]) for d in exc.details)
    if problems:
        raise ValidationError.of(problems)
    return when


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
    rerun_of: str | None = None,
    check_callback: Callable[[Any], str | None] = callback_url_problem,
    max_attempts_limit: int = MAX_ATTEMPTS,
) -> tuple[Job, bool]:
    """Queue a job. Returns (job, created); created is False when the key was seen before.

    Everything is checked before anything is written, and every problem is named at once.
    `max_attempts_limit` is the deployment's bound on maxAttempts (MAX_ATTEMPTS_LIMIT).
    """
    when = _checked(
        session, registry, kind, payload, priority, run_at, max_attempts, idempotency_key, callback_url,
        check_callback, max_attempts_limit,
    )  # fmt: skip
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
        rerun_of=rerun_of,
    )
    if row is not None:
        return Job.from_row(row), True
    existing = session.row("find_job_by_idempotency_key", tenant=tenant, idempotency_key=idempotency_key)
    if existing is None:  # the keyed job was archived between the two statements
        return enqueue(
            session, registry, kind=kind, payload=payload, priority=priority,
            run_at=when, max_attempts=max_attempts, idempotency_key=idempotency_key, callback_url=callback_url,
            tenant=tenant, rerun_of=rerun_of, check_callback=check_callback, max_attempts_limit=max_attempts_limit,
        )  # fmt: skip
    job = Job.from_row(existing)
    if differences := _differences(job, kind, payload, priority, when, max_attempts, callback_url):
        raise IdempotencyConflict(
            f"idempotencyKey {idempotency_key[:60]!r} names a job with a different "
            + ", ".join(field for field, _ in differences),
            [{"field": field, "message": message} for field, message in differences],
        )
    return job, False


MAX_BULK_JOBS = 1000
BULK_DEFAULTS = {
    "kind": None,
    "priority": 0,
    "run_at": None,
    "max_attempts": 3,
    "idempotency_key": None,
    "callback_url": None,
}
BULK_OPTIONS = frozenset(BULK_DEFAULTS)


def enqueue_many(
    session: Session,
    registry: HandlerRegistry,
    requests: list[tuple[dict, dict]],
    *,
    tenant: str = DEFAULT_TENANT,
    traceparent: str | None = None,
    check_callback: Callable[[Any], str | None] = callback_url_problem,
    max_attempts_limit: int = MAX_ATTEMPTS,
) -> list[tuple[Job, bool] | JobQueueError]:
    """Queue many jobs in one transaction: `requests` holds (payload, options) per job, options
    named as `enqueue`'s. The answer, in the same order, is per job (job, created) or the
    error for that job alone (a ValidationError, an IdempotencyConflict): a bad job costs
    only its own place, and every job either has its row or its error.

    Keys work as in `enqueue`, also between jobs of the same list (the second of two jobs
    with one key answers with the first's job, or a conflict if they differ), so a retried
    request whose jobs carry keys creates nothing twice."""
    answers: list[tuple[Job, bool] | JobQueueError | None] = [None] * len(requests)
    rows: list[dict] = []
    for position, (payload, options) in enumerate(requests):
        try:
            rows.append(_bulk_row(session, registry, position, payload, options, check_callback, max_attempts_limit))
        except JobQueueError as exc:
            answers[position] = exc
    if not rows:
        return answers
    with session.transaction():
        for _ in range(3):  # a keyed job archived between insert and read is inserted again
            rows = _insert_bulk(session, rows, answers, tenant, traceparent)
            if not rows:
                break
    for row in rows:  # not reached in practice: three rounds of archiving races
        answers[row["position"]] = Conflict("The job with this idempotencyKey changed while queueing; send it again")
    return answers


def _bulk_row(
    session: Session,
    registry: HandlerRegistry,
    position: int,
    payload: dict,
    options: dict,
    check_callback: Callable[[Any], str | None],
    max_attempts_limit: int,
) -> dict:
    """One job of a bulk request as the insert's JSON row, once it passes enqueue's checks."""
    if unknown := sorted(set(options) - BULK_OPTIONS):
        raise ValidationError.of([(name, "cannot be used in a bulk request") for name in unknown])
    fields = {**BULK_DEFAULTS, **options}
    when = _checked(
        session, registry, fields["kind"], payload, fields["priority"], fields["run_at"], fields["max_attempts"],
        fields["idempotency_key"], fields["callback_url"], check_callback, max_attempts_limit,
    )  # fmt: skip
    return {
        **fields,
        "position": position,
        "id": str(uuid.uuid4()),  # random: the id is the status page's capability
        "payload": payload,
        "run_at": when.isoformat() if when else None,
    }


def _insert_bulk(session: Session, rows: list[dict], answers: list, tenant: str, traceparent: str | None) -> list[dict]:
    """Insert the rows, answer each inserted one and each whose key names a job already; return
    those neither inserted nor found (their keyed job was archived in between)."""
    result = session.row("enqueue_jobs", jobs=json.dumps(rows), tenant=tenant, traceparent=traceparent)
    inserted, created_at = set((result["ids"] or "").split(",")), result["created_at"]
    keys = sorted({row["idempotency_key"] for row in rows if row["id"] not in inserted})
    existing = {
        row["idempotency_key"]: Job.from_row(row)
        for row in (session.rows("find_jobs_by_idempotency_keys", tenant=tenant, idempotency_keys=keys) if keys else [])
    }
    again = []
    for row in rows:
        if row["id"] in inserted:
            answers[row["position"]] = (_inserted_job(row, created_at, tenant, traceparent), True)
        elif (job := existing.get(row["idempotency_key"])) is None:
            again.append(row)
        else:
            answers[row["position"]] = _repeated(job, row)
    return again


def _inserted_job(row: dict, created_at: datetime, tenant: str, traceparent: str | None) -> Job:
    """The job enqueue_jobs.sql just inserted for `row`: the request's fields, what that statement
    writes, the columns' defaults, and the transaction's time (created_at; run_at when the request
    names none). test_bulk_enqueue compares it with the row read back, field by field."""
    return Job(
        id=row["id"], kind=row["kind"], job_status=JobStatus.QUEUED, payload=row["payload"], result=None, error=None,
        progress=0, current_step="Queued", priority=row["priority"], attempts=0, max_attempts=row["max_attempts"],
        run_at=parse_time(row["run_at"]) if row["run_at"] else created_at, processed_at=None, finished_at=None, last_heartbeat=None,
        idempotency_key=row["idempotency_key"], worker_token=None, cancel_requested_at=None, last_event_seq=1,
        created_at=created_at, updated_at=created_at, callback_url=row["callback_url"],
        tenant=tenant, rerun_of=None, traceparent=traceparent,
    )  # fmt: skip


def _repeated(job: Job, row: dict) -> tuple[Job, bool] | IdempotencyConflict:
    when = parse_time(row["run_at"]) if row["run_at"] else None
    differences = _differences(
        job, row["kind"], row["payload"], row["priority"], when, row["max_attempts"], row["callback_url"]
    )
    if not differences:
        return job, False
    return IdempotencyConflict(
        f"idempotencyKey {row['idempotency_key'][:60]!r} names a job with a different "
        + ", ".join(field for field, _ in differences),
        [{"field": field, "message": message} for field, message in differences],
    )


def _differences(
    job: Job,
    kind: str,
    payload: dict,
    priority: int,
    when: datetime | None,
    max_attempts: int,
    callback_url: str | None,
) -> list[tuple[str, str]]:
    """What a repeated request changes, field by field: a repeat must be the same request.

    runAt is compared while the job has not run (a retry moves it): a repeat that names no
    time matches a job whose first request named none (its run_at is then its created_at).
    """
    differs = "differs from the request that first used this idempotencyKey"
    found = [
        (field, differs)
        for field, mine, theirs in (
            ("kind", kind, job.kind),
            ("priority", priority, job.priority),
            ("maxAttempts", max_attempts, job.max_attempts),
            ("callbackUrl", callback_url, job.callback_url),
        )
        if mine != theirs
    ]
    if payload != job.payload:
        changed = sorted(k for k in {*payload, *job.payload} if payload.get(k, ...) != job.payload.get(k, ...))
        found.extend((field, f"(in the payload) {differs}") for field in changed)
    if job.attempts == 0 and job.run_at != (when or job.created_at):
        found.append(("runAt", differs))
    return found


RERUNNABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})
RERUN_KEEPS = ("priority", "max_attempts", "callback_url")  # from the original, unless given


def rerun_request(session: Session, original_id: Any, tenant: str, payload: dict, options: dict) -> tuple[dict, dict]:
    """(payload, options) for `enqueue` that re-run the tenant's failed or cancelled job: its
    kind, payload and tenant, its priority, attempts and callback unless `options` name
    others, and `rerun_of` naming it. Another tenant's job is NotFound; an unfinished or
    completed one a Conflict."""
    original_id = parse_job_id(original_id, field="rerunOf")
    if payload:
        fields = ", ".join(sorted(payload))[:200]
        raise ValidationError.of(
            [("rerunOf", f"a re-run takes the original's payload; send no other fields ({fields})")]
        )
    original = get_tenant_job(session, original_id, tenant)
    if original.job_status not in RERUNNABLE:
        raise Conflict(f"Job {original_id} is {original.job_status}: only a failed or cancelled job can be re-run")
    kept = {name: getattr(original, name) for name in RERUN_KEEPS}
    given = {name: value for name, value in options.items() if name not in ("kind", "rerun_of", "tenant")}
    return original.payload, {
        **kept,
        **given,
        "kind": original.kind,
        "tenant": original.tenant,
        "rerun_of": original.id,
    }


def claim_next(session: Session) -> Job | None:
    """The next due job, now running under a fresh lease; None when nothing is due."""
    return claim_next_and_heads(session)[0]


def claim_next_and_heads(session: Session) -> tuple[Job | None, list[dict]]:
    """The full claim: the next due job (or None), and the head of each tenant it weighed,
    as {tenant, priority, run_at, id}: the floors a hinted claim may start from."""
    return _job_and_heads(session.row("claim_next_job"))


def claim_next_from_floor(session: Session, floors: list[dict]) -> tuple[Job | None, list[dict]]:
    """The hinted claim: like the full one among the tenants of `floors`, each one's scan
    starting at its floor. None when nothing is due at or after them (the full claim may
    still find a job sorting before a floor)."""
    if len(floors) == 1:  # one tenant: no fair pick to make, and the claimed job is its head
        row = session.row("claim_next_job_from_one_floor", **floors[0])
        job = Job.from_row(row) if row else None
        return job, [] if job is None else [head_of(job)]
    return _job_and_heads(session.row("claim_next_job_from_floor", floors=json.dumps(floors)))


def head_of(job: Job) -> dict:
    """A job's key in the claim order, as the full claim's `heads` give it (a floor)."""
    return {"tenant": job.tenant, "priority": job.priority, "run_at": job.run_at.isoformat(), "id": job.id}


def _job_and_heads(row: dict | None) -> tuple[Job | None, list[dict]]:
    return (Job.from_row(row), row["heads"]) if row else (None, [])


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


def get_tenant_job(session: Session, job_id: str, tenant: str) -> Job:
    """The job, if it is the tenant's (any tenant's for the admin). Another tenant's job is
    NotFound, exactly as an unknown one: the answer never confirms that it exists."""
    job = get_job(session, job_id)
    if tenant not in (ADMIN_TENANT, job.tenant):
        raise NotFound()
    return job


def list_events(session: Session, job_id: str, after_seq: int = 0, limit: int = 1000) -> list[Event]:
    rows = session.rows("list_events", id=job_id, after_seq=after_seq, max_events=limit)
    return [Event(r["seq"], r["kind"], r["data"], r["created_at"]) for r in rows]


def latest_message_and_preview(session: Session, job_id: str) -> tuple[str | None, dict | None]:
    """The newest progress message and the newest preview ({"format", "content"}: its whole text,
    appends included)."""
    row = session.row("read_latest_message_and_preview", id=job_id) or {}
    return row.get("message"), row.get("preview")


def cancel(session: Session, job_id: str, tenant: str = ADMIN_TENANT) -> tuple[CancelOutcome, Job]:
    """Cancel the tenant's job: at once if queued, by request if running. Twice is harmless.
    Another tenant's job is NotFound (the admin's tenant reaches every job)."""
    row = session.row("request_cancel", id=job_id, tenant=tenant, all_tenants=tenant == ADMIN_TENANT)
    if row is not None:
        job = Job.from_row(row)
        outcome = CancelOutcome.CANCELLED if job.job_status == JobStatus.CANCELLED else CancelOutcome.REQUESTED
        return outcome, job
    job = get_tenant_job(session, job_id, tenant)
    if job.job_status == JobStatus.CANCELLED:
        return CancelOutcome.ALREADY_CANCELLED, job
    if job.job_status == JobStatus.RUNNING:  # a cancel was requested before this one
        return CancelOutcome.REQUESTED, job
    return CancelOutcome.ALREADY_FINISHED, job
