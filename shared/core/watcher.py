"""The lease watcher: one thread per instance that looks after every job it has in flight.

One heartbeat statement for all of them every HEARTBEAT_SECONDS; a cancel request arrives by
notification (the job_cancel topic of the process's notifier) and sets the handler's
`ctx.cancelled` at once; while that topic is not heard (or for jobs claimed since the last
tick), one lease check for all of them every CANCEL_CHECK_SECONDS carries cancels instead. A
job that runs past JOB_MAX_RUN_SECONDS is told to stop. A job whose lease is gone (swept and
claimed again elsewhere) is told so and stops writing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.core import log, queue
from shared.core.db import Pool
from shared.core.errors import DatabaseUnavailable
from shared.core.notifier import JOB_CANCEL, Subscription, notifier_for
from shared.core.queue import Lease
from shared.core.settings import Settings

if TYPE_CHECKING:
    from shared.core.runner import JobContext

# The watcher (and its subscription to cancels) stops after this long without a job, so an
# idle instance holds no connection; the next job starts them again.
WATCHER_IDLE_SECONDS = 60.0


@dataclass
class _Watched:
    lease: Lease
    ctx: JobContext
    fresh: bool = True  # not yet looked at since its claim: checked on the next tick


@dataclass
class WatcherStats:
    """What the watcher spent, for tests and benchmarks."""

    heartbeats: int = 0  # statements (each for all the instance's jobs)
    checks: int = 0
    notified: int = 0  # cancels that arrived by notification
    timed_out: int = 0
    last_beat: dict = field(default_factory=dict)


class Watcher(threading.Thread):
    """One thread per instance that looks after every job it has in flight: one heartbeat
    statement for all of them every HEARTBEAT_SECONDS, cancels by notification, and, while
    the listening connection is down (or for jobs claimed since the last tick), one lease
    check for all of them every CANCEL_CHECK_SECONDS. Its statements borrow a pooled
    connection like any write and run under the statement timeout, and it never waits on
    one job's write."""

    def __init__(self, pool: Pool, settings: Settings, listen: bool = True):
        super().__init__(name="lease-watcher", daemon=True)
        self.pool = pool
        self.check_every = settings.cancel_check_seconds
        self.beat_every = settings.heartbeat_seconds
        self.idle_exit = WATCHER_IDLE_SECONDS
        self._jobs: dict[str, _Watched] = {}
        self._lock = threading.Lock()
        self._next_beat = time.monotonic() + self.beat_every
        self._idle_since = time.monotonic()
        self.exited = False
        self.stats = WatcherStats()
        self.notifier = notifier_for(settings.direct_database, settings.db_timeout_seconds) if listen else None
        self.cancels: Subscription | None = None

    def start(self) -> None:
        if self.notifier is not None:
            self.cancels = self.notifier.subscribe(
                JOB_CANCEL, self._cancels_requested, on_listening=self._look_at_all_again
            )
        super().start()

    def watch(self, lease: Lease, ctx: JobContext) -> bool:
        """Look after this job; False when this watcher has already stopped (take a new one)."""
        with self._lock:
            if self.exited:
                return False
            self._jobs[ctx.job_id] = _Watched(lease, ctx)
            return True

    def unwatch(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)
            if not self._jobs:
                self._idle_since = time.monotonic()

    def stop(self) -> None:
        with self._lock:
            self.exited = True
        self._unsubscribe()

    def _unsubscribe(self) -> None:
        if self.cancels is not None:
            self.cancels.close()

    @property
    def listening(self) -> bool:
        return self.cancels is not None and self.cancels.listening

    def _look_at_all_again(self) -> None:
        with self._lock:
            for watched in self._jobs.values():
                watched.fresh = True

    def _cancels_requested(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            with self._lock:
                watched = self._jobs.get(job_id)
            if watched is not None and not watched.ctx.cancelled.is_set():
                log.info("Cancel requested", jobId=job_id, by="notification")
                self.stats.notified += 1
                watched.ctx.cancelled.set()

    def run(self) -> None:
        while not self.exited:
            time.sleep(self.check_every)
            with self._lock:
                jobs = list(self._jobs.values())
                if not jobs and time.monotonic() - self._idle_since >= self.idle_exit:
                    self.exited = True
            if self.exited:
                break
            try:
                self.tick(jobs)
            except Exception as exc:  # noqa: BLE001 (the watcher must outlive any one failure)
                log.error("Lease watcher tick failed", error=f"{type(exc).__name__}: {exc}")
        self._unsubscribe()

    def tick(self, jobs: list[_Watched]) -> None:
        now = time.monotonic()
        for watched in jobs:
            self._enforce_time_limit(watched, now)
        if not jobs:
            return
        if now >= self._next_beat:
            if self._look(queue.record_heartbeats, jobs):
                self._next_beat = now + self.beat_every
                self.stats.heartbeats += 1
            return
        due = jobs if not self.listening else [watched for watched in jobs if watched.fresh]
        if due and self._look(queue.check_leases, due):
            self.stats.checks += 1

    def _enforce_time_limit(self, watched: _Watched, now: float) -> None:
        ctx = watched.ctx
        if ctx.deadline is not None and now >= ctx.deadline and not ctx.timed_out:
            log.warning("Job ran past its time limit; stopping the handler", jobId=ctx.job_id)
            ctx.timed_out = True
            self.stats.timed_out += 1
            ctx.cancelled.set()

    def _look(self, operation, jobs: list[_Watched]) -> bool:
        """Run one batched statement for `jobs`; act on lost leases and cancel requests."""
        try:
            with self.pool.session() as session:
                held = operation(session, [watched.lease for watched in jobs])
        except DatabaseUnavailable:
            return False  # the next tick tries again; the handlers' own writes retry too
        for watched in jobs:
            watched.fresh = False
            ctx = watched.ctx
            if watched.ctx.job_id not in held:
                self._lease_lost(watched)
            elif held[ctx.job_id] and not ctx.cancelled.is_set():
                log.info("Cancel requested", jobId=ctx.job_id)
                ctx.cancelled.set()
        return True

    def _lease_lost(self, watched: _Watched) -> None:
        with self._lock:
            still_running = self._jobs.get(watched.ctx.job_id) is watched
            if still_running:
                del self._jobs[watched.ctx.job_id]
        if still_running:  # not merely finished while we looked
            log.warning("Lease lost; stopping the handler", jobId=watched.ctx.job_id)
            watched.ctx.lease_lost = True
            watched.ctx.cancelled.set()
