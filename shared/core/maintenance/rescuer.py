"""Rescue stalled jobs: a running job whose heartbeat stopped (its invocation died) is
requeued while attempts remain, else failed; one whose cancel was requested is cancelled,
never rescued."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.core.db import Session
from shared.core.jobs import Job, JobStatus
from shared.core.maintenance.batches import MAX_BATCHES, SWEEP_BATCH, in_batches


@dataclass
class Rescued:
    requeued: list[Job] = field(default_factory=list)  # to dispatch again
    finished: list[Job] = field(default_factory=list)  # failed or cancelled: their webhooks are due

    def count(self, status: JobStatus) -> int:
        return sum(job.job_status == status for job in self.finished)


def rescue_stalled(session: Session, stalled_after_seconds: float, max_batches: int = MAX_BATCHES) -> Rescued:
    rescued = Rescued()

    def batch() -> int:
        rows = session.rows("sweep_stalled", stalled_after_seconds=stalled_after_seconds, batch_size=SWEEP_BATCH)
        for job in map(Job.from_row, rows):
            (rescued.requeued if job.job_status == JobStatus.QUEUED else rescued.finished).append(job)
        return len(rows)

    in_batches(batch, max_batches)
    return rescued
