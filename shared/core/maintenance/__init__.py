"""Sweep's duties, one service per file (as River's internal/maintenance/), each over its
own named statement and in bounded batches, so that one tick never runs unbounded:

    rescuer.py        jobs whose heartbeat stopped: requeued, or failed / cancelled for good
    archiver.py       finished jobs past RETENTION_DAYS move to the archive
    purger.py         archived jobs past ARCHIVE_RETENTION_DAYS are deleted for good
    outbox_pruner.py  sent or given-up webhooks past RETENTION_DAYS are deleted
    redispatcher.py   queued jobs waiting past REDISPATCH_AFTER_SECONDS get a new task

maintainer.py runs them in that order (`sweep`); operations.sweep_and_redispatch adds what
follows (the requeued jobs' tasks, the webhooks).
"""

from shared.core.maintenance.maintainer import SWEEP_BATCH, SweepReport, sweep

__all__ = ["SWEEP_BATCH", "SweepReport", "sweep"]
