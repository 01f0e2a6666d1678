"""Redispatch waiting jobs: a queued job still waiting REDISPATCH_AFTER_SECONDS after its
run_at may have lost its Cloud Task (at-least-once delivery can also mean never, when a push
failed after the commit); it gets a new one. The task's name is the job's and the window's,
so repeated sweeps add one task per window, and a duplicate delivery runs nothing twice."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from shared.core.db import Session
from shared.core.jobs import Job
from shared.core.maintenance.batches import SWEEP_BATCH

if TYPE_CHECKING:
    from shared.core.dispatch import Dispatcher


def find_waiting(session: Session, waited_seconds: float, limit: int = SWEEP_BATCH) -> list[Job]:
    rows = session.rows("find_waiting_jobs", waited_seconds=waited_seconds, batch_size=limit)
    return [Job.from_row(row) for row in rows]


def redispatch(dispatcher: Dispatcher, waiting: Iterable[Job], dispatched: set[str]) -> int:
    """A new task for each waiting job not `dispatched` already in this tick; how many went."""
    return dispatcher.redispatch_waiting([job for job in waiting if job.id not in dispatched])
