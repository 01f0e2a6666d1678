"""The maintainer: sweep's database duties in order, on one connection: rescue, archive,
prune the outbox, purge the archive, and last find what waits too long."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.core.db import Session
from shared.core.jobs import Job, JobStatus
from shared.core.maintenance.archiver import archive_finished
from shared.core.maintenance.batches import SWEEP_BATCH
from shared.core.maintenance.outbox_pruner import prune_outbox
from shared.core.maintenance.purger import purge_archive
from shared.core.maintenance.redispatcher import find_waiting
from shared.core.maintenance.rescuer import rescue_stalled

__all__ = ["SWEEP_BATCH", "SweepReport", "sweep"]


@dataclass
class SweepReport:
    requeued: int = 0
    failed: int = 0
    cancelled: int = 0
    archived: int = 0
    purged: int = 0  # archived jobs deleted for good (ARCHIVE_RETENTION_DAYS)
    pruned: int = 0  # outbox rows deleted
    requeued_jobs: tuple[Job, ...] = ()  # to dispatch again
    finished_jobs: tuple[Job, ...] = ()  # failed or cancelled: their webhooks are due
    waiting_jobs: tuple[Job, ...] = field(default=(), repr=False)  # queued too long: a new task

    def to_json(self) -> dict:
        return {
            "requeued": self.requeued,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "archived": self.archived,
        }


def sweep(
    session: Session,
    stalled_after_seconds: float,
    retention_days: int,
    archive_retention_days: int = 0,
    redispatch_after_seconds: float | None = None,
) -> SweepReport:
    """Every duty once; `archive_retention_days` 0 purges nothing, and without
    `redispatch_after_seconds` (no Cloud Tasks) nothing is looked for to redispatch."""
    rescued = rescue_stalled(session, stalled_after_seconds)
    return SweepReport(
        requeued=len(rescued.requeued),
        failed=rescued.count(JobStatus.FAILED),
        cancelled=rescued.count(JobStatus.CANCELLED),
        requeued_jobs=tuple(rescued.requeued),
        finished_jobs=tuple(rescued.finished),
        archived=archive_finished(session, retention_days),
        pruned=prune_outbox(session, retention_days),
        purged=purge_archive(session, archive_retention_days),
        waiting_jobs=tuple(find_waiting(session, redispatch_after_seconds) if redispatch_after_seconds else ()),
    )
