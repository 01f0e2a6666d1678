"""The webhook outbox: deliveries owed, drained apart from the request that ended the job.

A transition that ends a job with a callback writes an outbox row in its own transaction
(the `jobs_outbox_add` trigger, migration 0005), so a crash after the commit cannot lose
the delivery. The row is drained later, within a time bound, by whoever comes next:

- with Cloud Tasks on, the row becomes a Cloud Task that POSTs the webhook (Cloud Tasks
  retries it from then on), pushed by the invocation that ended the job;
- without, it is sent directly at the end of each process invocation (before it answers:
  Cloud Run throttles the CPU once a response is sent) and at each sweep tick.

Delivery is at least once: a drainer that crashed after sending but before recording it
sends again when its lease runs out. Receivers deduplicate by the job id in the body.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from shared.core import log
from shared.core.backoff import backoff_seconds
from shared.core.db import Pool, Session
from shared.core.errors import NotFound
from shared.core.jobs import Job
from shared.core.queue import get_job

# A failed delivery is tried again after 30 s, 1, 2, 4 ... minutes, at most an hour apart.
RETRY_BASE_SECONDS = 30.0
RETRY_MAX_SECONDS = 3600.0
# How long a drainer holds the rows it claimed: longer than any send it makes, so a row is
# taken over only from a drainer that is gone.
LEASE_SECONDS = 120.0
BATCH = 5


@dataclass(frozen=True)
class Delivery:
    id: int
    job_id: str
    event_type: str
    callback_url: str
    attempts: int
    claim_token: str

    @classmethod
    def from_row(cls, row: dict) -> Delivery:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})


@dataclass
class Drained:
    sent: int = 0
    failed: int = 0
    left: int = 0  # claimed, then given back untried: the time bound came first

    def __add__(self, other: Drained) -> Drained:
        return Drained(self.sent + other.sent, self.failed + other.failed, self.left + other.left)


# What sends one delivery: None when it went out (or to Cloud Tasks), else what went wrong.
Sender = Callable[[Delivery, Job, float], str | None]


def claim(
    session: Session, limit: int, job_id: str | None = None, lease_seconds: float = LEASE_SECONDS
) -> list[Delivery]:
    rows = session.rows("outbox_claim", job_id=job_id, batch_size=limit, lease_seconds=lease_seconds)
    return [Delivery.from_row(row) for row in rows]


def mark_done(session: Session, delivery: Delivery) -> None:
    session.row("outbox_done", id=delivery.id, claim_token=delivery.claim_token)


def mark_failed(session: Session, delivery: Delivery, error: str, max_attempts: int) -> bool:
    """Schedule the next try with backoff; True when this was the last one allowed."""
    delay = backoff_seconds(delivery.attempts + 1, RETRY_BASE_SECONDS, RETRY_MAX_SECONDS)
    row = session.row(
        "outbox_retry",
        id=delivery.id,
        claim_token=delivery.claim_token,
        error=error[:1000],
        retry_delay_seconds=delay,
        max_attempts=max_attempts,
    )
    return bool(row and row["gave_up_at"] is not None)


def release(session: Session, delivery: Delivery) -> None:
    session.rows("outbox_release", id=delivery.id, claim_token=delivery.claim_token)


def drain(
    pool: Pool,
    send: Sender,
    seconds: float,
    max_attempts: int,
    job_id: str | None = None,
    batch: int = BATCH,
) -> Drained:
    """Send what is due (only `job_id`'s, when given) until `seconds` have passed. Each send
    gets the time that is left; what is claimed and not tried by then is given back. The
    database connection is held for each statement, never across a send."""
    deadline = time.monotonic() + seconds
    report = Drained()
    while time.monotonic() < deadline:
        with pool.session() as session:
            claimed = claim(session, batch, job_id)
        if not claimed:
            break
        for index, delivery in enumerate(claimed):
            left = deadline - time.monotonic()
            if left <= 0:
                with pool.session() as session:
                    for untried in claimed[index:]:
                        release(session, untried)
                report.left += len(claimed) - index
                return report
            _send_one(pool, send, delivery, left, max_attempts, report)
    return report


def _send_one(pool: Pool, send: Sender, delivery: Delivery, seconds: float, max_attempts: int, report: Drained) -> None:
    with pool.session() as session:
        try:
            job = get_job(session, delivery.job_id)
        except NotFound:
            job = None
    problem = "the job no longer exists" if job is None else send(delivery, job, seconds)
    with pool.session() as session:
        if problem is None:
            mark_done(session, delivery)
            report.sent += 1
            return
        # A job that is gone (archived and purged) has nothing left to send: give up now.
        gave_up = mark_failed(session, delivery, problem, 1 if job is None else max_attempts)
    report.failed += 1
    (log.error if gave_up else log.warning)(
        "Webhook delivery gave up" if gave_up else "Webhook delivery failed; it will be retried",
        jobId=delivery.job_id,
        attempt=delivery.attempts + 1,
        error=problem,
    )
