"""Archive finished jobs: completed, failed and cancelled jobs older than RETENTION_DAYS move
(with their events) out of the live tables, which stay small whatever the history."""

from __future__ import annotations

from shared.core.db import Session
from shared.core.maintenance.batches import MAX_BATCHES, SWEEP_BATCH, in_batches


def archive_finished(session: Session, retention_days: int, max_batches: int = MAX_BATCHES) -> int:
    """How many jobs were archived."""
    return in_batches(
        lambda: session.row("archive_finished", retention_days=retention_days, batch_size=SWEEP_BATCH)["archived"],
        max_batches,
    )
