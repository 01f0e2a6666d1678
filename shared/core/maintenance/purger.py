"""Purge the archive: archived jobs (and their events) finished more than
ARCHIVE_RETENTION_DAYS ago are deleted for good; 0 keeps them for ever."""

from __future__ import annotations

from shared.core.db import Session
from shared.core.maintenance.batches import MAX_BATCHES, SWEEP_BATCH, in_batches


def purge_archive(session: Session, archive_retention_days: int, max_batches: int = MAX_BATCHES) -> int:
    """How many archived jobs were deleted."""
    if archive_retention_days <= 0:
        return 0
    return in_batches(
        lambda: session.row("purge_archived", archive_retention_days=archive_retention_days, batch_size=SWEEP_BATCH)[
            "purged"
        ],
        max_batches,
    )
