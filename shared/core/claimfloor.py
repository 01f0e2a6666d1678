"""The remembered floor: where an instance's next-job claims start (docs/claim-design.md).

While an old transaction holds vacuum back, every job claimed since leaves a dead entry at
the front of its tenant's part of the queued-jobs index, and a claim that scans from the
start visits the heap for each of them: the claim grows slower with every job run. An
instance remembers, per tenant, the key (priority, run_at, id) of the head it last claimed
or saw, and starts the next claim's scan there (`claim_next_job_from_floor.sql`): it reads
what a clean claim reads however long the hold lasts, and writes nothing to do so.

The floor can miss a job that sorts before it (enqueued with a higher priority or an earlier
runAt, or a row another claim held while this one ran: a thread's hinted claim locks every
tenant's head and takes one, so a concurrent claim skips the others' heads and moves their
floors past them). So the full claim (`claim_next_job.sql`,
the one every fairness and ordering test holds) runs when the hinted one finds nothing, and
every CLAIM_RESCAN_SECONDS regardless; its heads replace the floors. A job the floor missed
therefore waits at most that long beyond its turn; none is lost, none claimed twice (the
hinted claim takes the same row locks and makes the same update as the full one). A tenant
new to this instance is likewise seen at the next full claim.

One floor per instance, shared by its threads: the floors are hints, so a thread that
writes an older one only costs the next claim a few more entries.

With two tenants or more, the fair pick weighs each tenant's running jobs, and no floor can
shorten that count: while vacuum is held back it walks every job run since. So the instance
keeps the counts too: each full claim's (exact, counted when it had a choice to make), plus
one for each job it has claimed since (by the floors or by name), less one for each of its
jobs that has ended (the runner says so). A hinted claim weighs those and counts no running
jobs; the next full claim, at most CLAIM_RESCAN_SECONDS later, counts again (and if full
claims keep failing for two periods, hinted claims count for themselves). Between full
claims the counts miss what other instances claimed and ended, and a claim or an end that
crosses a full claim in flight may be counted once too often or not at all until the next
(docs/claim-design.md, "running counts from the floors", says what that changes).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from shared.core import queue
from shared.core.db import Session
from shared.core.jobs import Job


class ClaimFloor:
    def __init__(self, rescan_seconds: float, clock: Callable[[], float] = time.monotonic):
        self.rescan_seconds = rescan_seconds
        self._clock = clock
        self._floors: dict[str, dict] = {}
        self._running: dict[str, int | None] = {}  # per tenant: the last full count, plus claims since
        self._counted_at = float("-inf")  # when a full claim last counted: older than two periods, count again
        self._rescan_at = float("-inf")  # an instance's first claim is a full one
        self._resets = 0  # how many full claims have replaced the floors: a hinted claim's heads must be newer
        self._lock = threading.Lock()

    def claim_next(self, session: Session) -> Job | None:
        """The next due job, now running under a fresh lease; None when nothing is due."""
        floors, resets = self._floors_unless_rescan_due()
        if floors:
            job, heads = queue.claim_next_from_floor(session, floors)
            if job is not None:
                self._move_up(heads, resets, job.tenant)
                return job
        job, heads = queue.claim_next_and_heads(session)
        self._reset(heads, job)
        return job

    @property
    def full_claims(self) -> int:
        """How many full claims (first, rescans, and after a floor found nothing) have run."""
        return self._resets

    def floors(self) -> list[dict]:
        """The floors as they stand (what the next hinted claim would start from), each with
        its tenant's running jobs as the instance counts them (None: the claim counts them)."""
        with self._lock:
            return self._current_floors(self._clock())

    def _current_floors(self, now: float) -> list[dict]:
        if len(self._floors) == 1:  # the one-floor claim: no fair pick, no count to bring
            return list(self._floors.values())
        if now - self._counted_at > 2 * self.rescan_seconds:  # the full claims keep failing: count live
            return [{**floor, "running": None} for floor in self._floors.values()]
        return [{**floor, "running": self._running.get(tenant)} for tenant, floor in self._floors.items()]

    def _floors_unless_rescan_due(self) -> tuple[list[dict], int]:
        """The floors (and how many resets they have seen), or none when the full claim is due:
        then this caller runs it, and the instance's other threads keep claiming from the floors
        meanwhile."""
        with self._lock:
            now = self._clock()
            if now >= self._rescan_at:
                self._rescan_at = now + self.rescan_seconds
                return [], self._resets
            return self._current_floors(now), self._resets

    def _move_up(self, heads: list[dict], resets: int, claimed_tenant: str) -> None:
        """Heads of a hinted claim that started before a full claim's reset are dropped: they
        would move a floor the reset moved back (to a job sorting before it) forward again.
        So is its claim from the counts: the reset's count may hold it already."""
        with self._lock:
            if resets == self._resets:
                self._floors.update((head["tenant"], head) for head in heads)  # each floor's count: _current_floors
                self._count_claim(claimed_tenant)

    def _reset(self, heads: list[dict], claimed: Job | None) -> None:
        with self._lock:
            self._floors = {head["tenant"]: _floor(head) for head in heads}
            self._running = {head["tenant"]: head.get("running") for head in heads}
            if claimed is not None:
                self._count_claim(claimed.tenant)  # counted before it ran: the statement's own claim
            self._resets += 1
            self._counted_at = self._clock()
            self._rescan_at = self._counted_at + self.rescan_seconds

    def count_claim(self, tenant: str) -> None:
        """A job of `tenant` this instance claimed by name (a Cloud Task's): one more running."""
        with self._lock:
            self._count_claim(tenant)

    def count_end(self, tenant: str) -> None:
        """A job of `tenant` this instance ran has ended: one fewer running."""
        with self._lock:
            if self._running.get(tenant):  # None: not counted (one tenant); 0: ended before the count
                self._running[tenant] -= 1

    def _count_claim(self, tenant: str) -> None:
        if self._running.get(tenant) is not None:
            self._running[tenant] += 1


def _floor(head: dict) -> dict:
    """A head's key in the claim order: what a floor is (its count is kept apart)."""
    return {key: head[key] for key in ("tenant", "priority", "run_at", "id")}
