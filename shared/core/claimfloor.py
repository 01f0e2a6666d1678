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
        self._rescan_at = float("-inf")  # an instance's first claim is a full one
        self._resets = 0  # how many full claims have replaced the floors: a hinted claim's heads must be newer
        self._lock = threading.Lock()

    def claim_next(self, session: Session) -> Job | None:
        """The next due job, now running under a fresh lease; None when nothing is due."""
        floors, resets = self._floors_unless_rescan_due()
        if floors:
            job, heads = queue.claim_next_from_floor(session, floors)
            if job is not None:
                self._move_up(heads, resets)
                return job
        job, heads = queue.claim_next_and_heads(session)
        self._reset(heads)
        return job

    @property
    def full_claims(self) -> int:
        """How many full claims (first, rescans, and after a floor found nothing) have run."""
        return self._resets

    def floors(self) -> list[dict]:
        """The floors as they stand (what the next hinted claim would start from)."""
        with self._lock:
            return list(self._floors.values())

    def _floors_unless_rescan_due(self) -> tuple[list[dict], int]:
        """The floors (and how many resets they have seen), or none when the full claim is due:
        then this caller runs it, and the instance's other threads keep claiming from the floors
        meanwhile."""
        with self._lock:
            now = self._clock()
            if now >= self._rescan_at:
                self._rescan_at = now + self.rescan_seconds
                return [], self._resets
            return list(self._floors.values()), self._resets

    def _move_up(self, heads: list[dict], resets: int) -> None:
        """Heads of a hinted claim that started before a full claim's reset are dropped: they
        would move a floor the reset moved back (to a job sorting before it) forward again."""
        with self._lock:
            if resets == self._resets:
                self._floors.update((head["tenant"], head) for head in heads)

    def _reset(self, heads: list[dict]) -> None:
        with self._lock:
            self._floors = {head["tenant"]: head for head in heads}
            self._resets += 1
            self._rescan_at = self._clock() + self.rescan_seconds
