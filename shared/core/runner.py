"""The runner that the process function calls: claim one job, run its handler, end it.

While the handler runs (in the caller's thread), the runner's watcher thread checks the
lease once every CANCEL_CHECK_SECONDS (a read) and writes the heartbeat every
HEARTBEAT_SECONDS, so a cancel request reaches the handler as `ctx.cancelled` within about
a second. The job ends in exactly one of: completed, failed, requeued for a retry, or
cancelled. An invocation that lost its lease (swept and claimed again elsewhere) writes
nothing more.
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
from shared.core.db import Pool, Session
from shared.core.errors import DatabaseUnavailable, JobCancelled, LeaseLost
from shared.core.handlers import HandlerRegistry
from shared.core.jobs import Job, JobStatus
from shared.core.queue import Lease
from shared.core.settings import Settings

T = TypeVar("T")

# How long a write keeps trying through a database blip before giving up on it.
WRITE_RETRY_SECONDS = 15.0
LOG_LEVELS = ("debug", "info", "warning", "error")


class LeaseKeeper:
    """The invocation's one connection to its job. Every write goes through here, under a
    lock (the handler and the watcher share the connection), and survives a short outage
    by reconnecting: the lease is a token in the row, not a property of the connection."""

    def __init__(self, session: Session, lease: Lease):
        self.session = session
        self.lease = lease
        self._lock = threading.Lock()

    @contextmanager
    def borrowed(self) -> Iterator[Session]:
        """The connection itself, for a handler's own short reads (the watcher waits)."""
        with self._lock:
            if self.session.broken:
                self.session.reopen()
            yield self.session

    def call(self, operation: Callable[..., T], *args: Any, retry_for: float = WRITE_RETRY_SECONDS) -> T:
        deadline = time.monotonic() + retry_for
        while True:
            with self._lock:
                try:
                    if self.session.broken:
                        self.session.reopen()
                    return operation(self.session, self.lease, *args)
                except DatabaseUnavailable:
                    if time.monotonic() >= deadline:
                        raise
            time.sleep(0.5)


class JobContext:
    """What a handler gets besides its payload."""

    def __init__(self, job: Job, keeper: LeaseKeeper, settings: Any = None):
        self.job_id = job.id
        self.settings = settings  # the kind's own settings, read at start (Kind.read_settings)
        self.attempt = job.attempts
        self.max_attempts = job.max_attempts
        self.cancelled = threading.Event()  # set on a cancel request, or when the lease is lost
        self.lease_lost = False  # set with cancelled when another invocation owns the job
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
        """`with ctx.session() as session:` the job's connection, for reading the app's own
        tables (the newsletter reads its sources). Keep it short: heartbeats wait meanwhile."""
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


class _Watcher(threading.Thread):
    """One thread per runner that looks after every job the runner has in flight: a lease
    check (a read) every CANCEL_CHECK_SECONDS and a heartbeat every HEARTBEAT_SECONDS.
    One long-lived thread, not one per job: starting and joining a thread per job cost more
    than a no-op job's own statements."""

    def __init__(self, settings: Settings):
        super().__init__(name="lease-watcher", daemon=True)
        self.check_every = settings.cancel_check_seconds
        self.beat_every = settings.heartbeat_seconds
        self._jobs: dict[str, tuple[LeaseKeeper, JobContext, list[float]]] = {}
        self._lock = threading.Lock()

    def watch(self, keeper: LeaseKeeper, ctx: JobContext) -> None:
        with self._lock:
            self._jobs[ctx.job_id] = (keeper, ctx, [time.monotonic() + self.beat_every])

    def unwatch(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def _watched(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._jobs

    def run(self) -> None:
        while True:
            time.sleep(self.check_every)
            with self._lock:
                jobs = list(self._jobs.values())
            for keeper, ctx, next_beat in jobs:
                self._look_after(keeper, ctx, next_beat)

    def _look_after(self, keeper: LeaseKeeper, ctx: JobContext, next_beat: list[float]) -> None:
        beat = time.monotonic() >= next_beat[0]
        try:
            operation = queue.record_heartbeat if beat else queue.check_lease
            cancel_requested = keeper.call(operation, retry_for=0)
        except LeaseLost:
            if self._watched(ctx.job_id):  # not merely finished while we looked
                log.warning("Lease lost; stopping the handler", jobId=ctx.job_id)
                ctx.lease_lost = True
                ctx.cancelled.set()
                self.unwatch(ctx.job_id)
            return
        except DatabaseUnavailable:
            return  # try again next tick; the handler's own writes retry too
        if beat:
            next_beat[0] = time.monotonic() + self.beat_every
        if cancel_requested and not ctx.cancelled.is_set():
            log.info("Cancel requested", jobId=ctx.job_id)
            ctx.cancelled.set()


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
    def __init__(self, pool: Pool, registry: HandlerRegistry, settings: Settings):
        self.pool = pool
        self.registry = registry
        self.settings = settings
        self._watcher: _Watcher | None = None
        self._watcher_lock = threading.Lock()

    def _watcher_thread(self) -> _Watcher:
        with self._watcher_lock:  # started on the first job: importing costs nothing
            if self._watcher is None:
                self._watcher = _Watcher(self.settings)
                self._watcher.start()
            return self._watcher

    def run_next(self) -> RunOutcome | None:
        """Claim and run the next due job; None when nothing is due."""
        with self.pool.session() as session:
            job = queue.claim_next(session)
            return self._run(session, job) if job else None

    def run_named(self, job_id: str) -> RunOutcome | None:
        """Claim and run that job; None when it is not queued and due (the caller reads why)."""
        with self.pool.session() as session:
            job = queue.claim_named(session, job_id)
            return self._run(session, job) if job else None

    @tracing.traced_run
    def _run(self, session: Session, job: Job) -> RunOutcome:
        keeper = LeaseKeeper(session, Lease.of(job))
        ctx = JobContext(job, keeper, self.settings.for_kind(job.kind))
        log.info("Job started", jobId=job.id, **metrics.started_fields(job))
        try:
            handler = self.registry.get(job.kind)
        except Exception as exc:  # noqa: BLE001 (an unknown kind or a broken import fails the job)
            detail = f"No handler for kind {job.kind!r}" if job.kind not in self.registry else str(exc)
            return self._fail(keeper, job, detail, retryable=False)
        watcher = self._watcher_thread()
        watcher.watch(keeper, ctx)
        try:
            result = handler(dict(job.payload), ctx)
            error = None
        except JobCancelled:
            result, error = None, None
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
        if ctx.cancelled.is_set():
            return self._end(keeper, job, Outcome.CANCELLED, queue.finish_cancelled)
        if error is not None:
            return self._fail(keeper, job, error, retryable=True)
        try:
            return self._end(keeper, job, Outcome.COMPLETED, queue.complete, result)
        except (TypeError, ValueError) as exc:  # serialising the result failed: nothing was written
            return self._fail(keeper, job, f"The handler's result is not JSON: {exc}", retryable=False)

    def _fail(self, keeper: LeaseKeeper, job: Job, error: str, retryable: bool) -> RunOutcome:
        delay = queue.retry_delay_seconds(
            job.attempts, self.settings.retry_base_seconds, self.settings.retry_max_seconds
        )
        outcome = self._end(keeper, job, Outcome.FAILED, queue.fail, error, delay, retryable)
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
