"""The runner that the process function calls: claim one job, run its handler, end it.

Many jobs run at once in one instance (one per functions-framework thread), and none holds
a database connection while its handler runs: each write (progress, log, event, result,
status) borrows a pooled connection for its one statement and gives it back; the lease
token in the row, not the connection, proves the job is still ours. So an instance uses
at most DB_POOL_SIZE connections (2 by default) plus one listening connection, whatever
the number of jobs.

One watcher thread per instance (watcher.py) looks after all its running jobs: one heartbeat statement
for all of them every HEARTBEAT_SECONDS; for a job that has run a quarter of a second, a cancel
request arrives by notification (one LISTEN connection per process, see notifier.py) and sets
the handler's `ctx.cancelled` at once; for a younger job, or while that connection is down, one
lease check for all of them every CANCEL_CHECK_SECONDS carries cancels instead. A job that runs past JOB_MAX_RUN_SECONDS is told to stop and its
attempt fails as timed out. The job ends in exactly one of: completed, failed, requeued for
a retry, or cancelled. An invocation that lost its lease (swept and claimed again
elsewhere) writes nothing more.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from shared.core import log, metrics, queue, tracing
from shared.core.backoff import backoff_seconds
from shared.core.claimfloor import ClaimFloor
from shared.core.db import Pool, PoolExhausted, Session
from shared.core.errors import DatabaseUnavailable, JobCancelled, LeaseLost
from shared.core.handlers import HandlerRegistry
from shared.core.jobs import Job, JobStatus
from shared.core.queue import Lease
from shared.core.settings import Settings
from shared.core.watcher import Watcher

T = TypeVar("T")

# How long a write keeps trying through a database blip before giving up on it. Waiting
# for a free pooled connection does not count: a job never fails for want of one.
WRITE_RETRY_SECONDS = 15.0
LOG_LEVELS = ("debug", "info", "warning", "error")


@contextmanager
def borrow(pool: Pool) -> Iterator[Session]:
    """A pooled connection for a short piece of work, waiting as long as the pool is busy."""
    while True:
        try:
            session = pool.lend()
        except PoolExhausted:
            log.warning("All pooled connections busy; a running job waits for one")
            time.sleep(0.1)  # with DB_POOL_TIMEOUT_SECONDS=0 the pool answers at once: no busy loop
            continue
        break
    try:
        yield session
    finally:
        pool.give_back(session)


class LeaseKeeper:
    """A running job's writes: each borrows a pooled connection for its statement, and
    survives a short outage by trying again; the lease is a token in the row, not a
    property of any connection."""

    def __init__(self, pool: Pool, lease: Lease):
        self.pool = pool
        self.lease = lease

    def borrowed(self):
        """A pooled connection, for a handler's own short reads."""
        return borrow(self.pool)

    def call(self, operation: Callable[..., T], *args: Any, retry_for: float = WRITE_RETRY_SECONDS) -> T:
        deadline = time.monotonic() + retry_for
        while True:
            try:
                with borrow(self.pool) as session:
                    return operation(session, self.lease, *args)
            except DatabaseUnavailable:
                if time.monotonic() >= deadline:
                    raise
            time.sleep(0.5)


class JobContext:
    """What a handler gets besides its payload."""

    def __init__(self, job: Job, keeper: LeaseKeeper, settings: Any = None, max_run_seconds: float | None = None):
        self.job_id = job.id
        self.settings = settings  # the kind's own settings, read at start (Kind.read_settings)
        self.attempt = job.attempts
        self.max_attempts = job.max_attempts
        self.cancelled = threading.Event()  # set on a cancel request, a lost lease, or the time limit
        self.lease_lost = False  # set with cancelled when another invocation owns the job
        self.timed_out = False  # set with cancelled when the job ran past JOB_MAX_RUN_SECONDS
        self.max_run_seconds = max_run_seconds
        self.deadline = None if max_run_seconds is None else time.monotonic() + max_run_seconds
        self._keeper = keeper

    def progress(self, percent: float | None, step: str | None = None, message: str | None = None) -> None:
        """Report progress (0 to 100), optionally the current step and a message."""
        clamped = None if percent is None else max(0, min(100, round(percent)))
        self._write(queue.record_progress, clamped, step, message)

    def log(self, message: str, level: str = "info") -> None:
        """A log line for the job's status stream."""
        self._write(queue.append_event, "log", {"level": _level(level), "message": str(message)})

    def emit(self, kind: str, data: dict) -> None:
        """Another event for the status stream (the newsletter sends `preview`)."""
        self._write(queue.append_event, kind, data)

    def session(self):
        """`with ctx.session() as session:` a pooled connection, for reading the app's own
        tables (the newsletter reads its sources). Keep it short: the instance's running
        jobs share a few connections."""
        return self._keeper.borrowed()

    def raise_if_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise JobCancelled()

    def _write(self, operation, *args) -> None:
        try:
            self._keeper.call(operation, *args)
        except LeaseLost:
            self.lease_lost = True
            self.cancelled.set()
            raise


def _level(level: str) -> str:
    return level if level in LOG_LEVELS else "info"


class Outcome(StrEnum):
    """How an invocation ended."""

    COMPLETED = "completed"
    FAILED = "failed"  # for good: no attempt left, or not worth retrying
    RETRYING = "retrying"  # requeued with backoff
    CANCELLED = "cancelled"
    LOST = "lost"  # the lease went elsewhere; this invocation wrote nothing more


@dataclass(frozen=True)
class RunOutcome:
    outcome: Outcome
    job: Job


class Runner:
    def __init__(self, pool: Pool, registry: HandlerRegistry, settings: Settings, listen: bool = True):
        self.pool = pool
        self.registry = registry
        self.settings = settings
        self.listen = listen  # False: no LISTEN connection, lease checks carry cancels
        self._watcher: Watcher | None = None
        self._watcher_lock = threading.Lock()
        self.claim_floor = ClaimFloor(settings.claim_rescan_seconds)  # per instance: where its claims start

    @property
    def watcher(self) -> Watcher | None:
        return self._watcher

    def _watch(self, lease: Lease, ctx: JobContext) -> Watcher:
        while True:
            with self._watcher_lock:  # started on the first job: importing costs nothing
                if self._watcher is None or self._watcher.exited:
                    self._watcher = Watcher(self.pool, self.settings, listen=self.listen)
                    self._watcher.start()
                watcher = self._watcher
            if watcher.watch(lease, ctx):
                return watcher

    def close(self) -> None:
        """Stop the watcher and its listening connection (tests; an instance just exits)."""
        with self._watcher_lock:
            if self._watcher is not None:
                self._watcher.stop()

    def run_next(self) -> RunOutcome | None:
        """Claim and run the next due job; None when nothing is due."""
        with self.pool.session() as session:
            job = self.claim_floor.claim_next(session)
        return self._run_counted(job) if job else None

    def run_named(self, job_id: str) -> RunOutcome | None:
        """Claim and run that job; None when it is not queued and due (the caller reads why)."""
        with self.pool.session() as session:
            job = queue.claim_named(session, job_id)
        if job is None:
            return None
        self.claim_floor.count_claim(job.tenant)
        return self._run_counted(job)

    def _run_counted(self, job: Job) -> RunOutcome:
        """Run it; then the instance's count of its tenant's running jobs drops (ClaimFloor)."""
        try:
            return self._run(job)
        finally:
            self.claim_floor.count_end(job.tenant)

    @tracing.traced_run
    def _run(self, job: Job) -> RunOutcome:
        keeper = LeaseKeeper(self.pool, Lease.of(job))
        ctx = JobContext(job, keeper, self.settings.for_kind(job.kind), self.settings.job_max_run_seconds)
        log.info("Job started", jobId=job.id, **metrics.started_fields(job))
        try:
            handler = self.registry.get(job.kind)
        except Exception as exc:  # noqa: BLE001 (an unknown kind or a broken import fails the job)
            detail = f"No handler for kind {job.kind!r}" if job.kind not in self.registry else str(exc)
            return self._fail(keeper, job, detail, retryable=False)
        watcher = self._watch(keeper.lease, ctx)
        try:
            result = handler(dict(job.payload), ctx)
            error = None
        except JobCancelled:
            # Only a cancel (or the time limit) may stop a job this way; raised without one, it
            # is the handler's bug, and the attempt fails rather than completing with no result.
            result, error = None, None if ctx.cancelled.is_set() else "JobCancelled raised with no cancel requested"
        except LeaseLost:
            result, error = None, None
        except Exception as exc:  # noqa: BLE001 (any handler failure fails the attempt)
            result, error = None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        finally:
            watcher.unwatch(job.id)
        return self._finish(keeper, ctx, job, result, error)

    def _finish(self, keeper: LeaseKeeper, ctx: JobContext, job: Job, result: Any, error: str | None) -> RunOutcome:
        if ctx.lease_lost:
            log.warning("Job lost its lease; nothing written", jobId=job.id)
            return RunOutcome(Outcome.LOST, job)
        if ctx.timed_out:
            limit = f"{ctx.max_run_seconds:g}"
            return self._fail(keeper, job, f"Timed out: ran past JOB_MAX_RUN_SECONDS ({limit} s)", retryable=True)
        if ctx.cancelled.is_set():
            return self._end(keeper, job, Outcome.CANCELLED, queue.finish_cancelled)
        if error is not None:
            return self._fail(keeper, job, error, retryable=True)
        try:
            return self._end(keeper, job, Outcome.COMPLETED, queue.complete, result)
        except (TypeError, ValueError) as exc:  # serialising the result failed: nothing was written
            return self._fail(keeper, job, f"The handler's result is not JSON: {exc}", retryable=False)

    def _fail(self, keeper: LeaseKeeper, job: Job, error: str, retryable: bool) -> RunOutcome:
        delay = backoff_seconds(job.attempts, self.settings.retry_base_seconds, self.settings.retry_max_seconds)
        outcome = self._end(keeper, job, Outcome.FAILED, queue.fail, error, delay, retryable)
        if outcome.outcome is Outcome.FAILED and outcome.job.job_status == JobStatus.CANCELLED:
            log.info("Job cancelled (its cancel was requested before it failed)", jobId=job.id)
            return RunOutcome(Outcome.CANCELLED, outcome.job)
        if outcome.outcome is Outcome.FAILED and outcome.job.job_status == JobStatus.QUEUED:
            log.warning(
                "Job attempt failed; retry scheduled",
                jobId=job.id,
                error=error,
                runAt=str(outcome.job.run_at),
                **metrics.ended_fields(outcome.job, Outcome.RETRYING),
            )
            return RunOutcome(Outcome.RETRYING, outcome.job)
        if outcome.outcome is Outcome.FAILED:
            log.error("Job failed", jobId=job.id, error=error, **metrics.ended_fields(outcome.job, Outcome.FAILED))
        return outcome

    def _end(self, keeper: LeaseKeeper, job: Job, name: Outcome, operation, *args) -> RunOutcome:
        try:
            ended = keeper.call(operation, *args)
        except LeaseLost:
            log.warning("Job lost its lease before it ended; nothing written", jobId=job.id)
            return RunOutcome(Outcome.LOST, job)
        if name is not Outcome.FAILED:
            log.info(f"Job {name}", jobId=job.id, **metrics.ended_fields(ended, name))
        return RunOutcome(name, ended)
