"""The lease watcher: one thread per instance that looks after every job it has in flight.

One heartbeat statement for all of them every HEARTBEAT_SECONDS; a cancel request arrives by
notification (the job_cancel topic of the process's notifier) and sets the handler's
`ctx.cancelled` at once; while that topic is not heard (or for jobs claimed since the last
tick), one lease check for all of them every CANCEL_CHECK_SECONDS carries cancels instead. A
job that runs past JOB_MAX_RUN_SECONDS is told to stop. A job whose lease is gone (swept and
claimed again elsewhere) is told so and stops writing.

The watcher listens only while a job of its has run LISTEN_AFTER_SECONDS. A LISTEN costs the
whole database: PostgreSQL 15 signals every backend listening in the database at each NOTIFY,
whatever its channels, and every job event notifies job_events (two per job at least). On the
core drain (no-op jobs, one worker) the runner's own listener cost 0.33 ms a job of 1.3
(docs/claim-design.md, "The listener's price"). A job that ends sooner is looked after by the
lease checks alone, as it is while the listener is down: a cancel reaches it within one tick.
The listener stops after LISTEN_LINGER_SECONDS without such a job, so that a run of short
jobs after a long one stops paying for it.
"""

from __future__ import annotations

import math
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
# Cancels by notification for a job that has run this long (the module's docstring says why
# not at once); until then the next tick's lease check carries them.
LISTEN_AFTER_SECONDS = 0.25
# How long the listener stays after the last job that ran LISTEN_AFTER_SECONDS (each start
# costs a connection: at most one per this long).
LISTEN_LINGER_SECONDS = 10.0


@dataclass
class _Watched:
    lease: Lease
    ctx: JobContext
    fresh: bool = True  # not yet looked at since its claim: checked on the next tick
    since: float = field(default_factory=time.monotonic)  # when the watcher took it


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
        self.listen_after = LISTEN_AFTER_SECONDS
        self.listen_linger = LISTEN_LINGER_SECONDS
        self._jobs: dict[str, _Watched] = {}
        self._lock = threading.Lock()
        self._next_beat = time.monotonic() + self.beat_every
        self._idle_since = time.monotonic()
        self.exited = False
        self.stats = WatcherStats()
        self.notifier = notifier_for(settings.direct_database, settings.db_timeout_seconds) if listen else None
        self.cancels: Subscription | None = None
        self._woken = threading.Event()  # a job came while nothing was due: the loop's wait ends
        self._follow_at = math.inf  # when the loop next looks at its jobs' ages (_follow_long_jobs)
        self._long_job_at = -math.inf  # when the watcher last saw a job that had
        self._heard = 0  # on_listening calls so far: a check in flight then must not clear fresh
        self._recheck = False  # on_listening came: check the fresh jobs now, not at the next tick

    def watch(self, lease: Lease, ctx: JobContext) -> bool:
        """Look after this job; False when this watcher has already stopped (take a new one)."""
        with self._lock:
            if self.exited:
                return False
            watched = self._jobs[ctx.job_id] = _Watched(lease, ctx)
            # While not listening, the loop looks at its jobs' ages every listen_after (from the
            # first job until its idle exit): only a job that comes while it waits for nothing
            # wakes it, and a run of short jobs costs one wake per listen_after, not one per job.
            wake = self.notifier is not None and self.cancels is None and self._follow_at == math.inf
            if wake:
                self._follow_at = watched.since + self.listen_after
        if wake:
            self._woken.set()
        return True

    def unwatch(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)
            if not self._jobs:
                self._idle_since = time.monotonic()

    def stop(self) -> None:
        with self._lock:
            self.exited = True
        self._woken.set()
        self._unsubscribe()

    def _subscribe(self) -> None:
        with self._lock:
            if self.exited or self.cancels is not None:
                return
            self.cancels = self.notifier.subscribe(
                JOB_CANCEL, self._cancels_requested, on_listening=self._look_at_all_again
            )

    def _unsubscribe(self) -> None:
        with self._lock:
            cancels, self.cancels = self.cancels, None
        if cancels is not None:
            cancels.close()

    def _follow_long_jobs(self, now: float) -> None:
        """Listen while a job has run listen_after, and for listen_linger after the last one;
        otherwise wake when the oldest job will have run that long."""
        if self.notifier is None:
            return
        with self._lock:
            oldest = min((watched.since for watched in self._jobs.values()), default=math.inf)
        if now - oldest >= self.listen_after:
            self._long_job_at = now
            self._subscribe()
        elif self.cancels is not None and now - self._long_job_at >= self.listen_linger:
            self._unsubscribe()
        with self._lock:  # again: a job watched meanwhile did not wake the loop
            oldest = min((watched.since for watched in self._jobs.values()), default=math.inf)
            if self.cancels is None:  # with no job now, a quarter second on (watch() need not wake us)
                self._follow_at = min(oldest, now) + self.listen_after
            else:
                self._follow_at = self._long_job_at + self.listen_linger

    @property
    def listening(self) -> bool:
        return self.cancels is not None and self.cancels.listening

    @property
    def caught_up(self) -> bool:
        """Listening, and every job read since the listener started (a cancel sent before it
        could hear one is in hand): from here on cancels come by notification."""
        with self._lock:
            return self.listening and not any(watched.fresh for watched in self._jobs.values())

    def _look_at_all_again(self) -> None:
        with self._lock:
            for watched in self._jobs.values():
                watched.fresh = True
            self._heard += 1
            self._recheck = True
        self._woken.set()

    def _cancels_requested(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            with self._lock:
                watched = self._jobs.get(job_id)
            if watched is not None and not watched.ctx.cancelled.is_set():
                log.info("Cancel requested", jobId=job_id, by="notification")
                self.stats.notified += 1
                watched.ctx.cancelled.set()

    def run(self) -> None:
        next_tick = time.monotonic() + self.check_every
        while not self.exited:
            self._woken.wait(max(0.0, min(next_tick, self._follow_at) - time.monotonic()))
            self._woken.clear()
            now = time.monotonic()
            with self._lock:
                jobs = list(self._jobs.values())
                recheck, self._recheck = self._recheck, False
                if not jobs and now - self._idle_since >= self.idle_exit:
                    self.exited = True
            if self.exited:
                break
            try:
                self._follow_long_jobs(now)
            except Exception as exc:  # noqa: BLE001 (e.g. no thread left to listen: the ticks carry cancels)
                self._follow_at = now + self.check_every  # not at once again: that would spin
                log.error("Lease watcher could not start listening", error=f"{type(exc).__name__}: {exc}")
            if now >= next_tick or recheck:
                next_tick = now + self.check_every
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
        with self._lock:
            heard = self._heard
        try:
            with self.pool.session() as session:
                held = operation(session, [watched.lease for watched in jobs])
        except DatabaseUnavailable:
            return False  # the next tick tries again; the handlers' own writes retry too
        with self._lock:
            if self._heard == heard:  # else LISTEN came up meanwhile: look at them again
                for watched in jobs:
                    watched.fresh = False
        for watched in jobs:
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
