"""The job record and its JSON form, which keeps the seed's camelCase field names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class JobStatus(StrEnum):
    """The job_status column's values (its CHECK constraint lists the same five)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


def iso(moment: datetime | None) -> str | None:
    """ISO-8601 in UTC with a Z, as the frontends parse it."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    job_status: str
    payload: dict
    result: Any
    error: str | None
    progress: int
    current_step: str | None
    priority: int
    attempts: int
    max_attempts: int
    run_at: datetime
    processed_at: datetime | None
    finished_at: datetime | None
    last_heartbeat: datetime | None
    idempotency_key: str | None
    worker_token: str | None
    cancel_requested_at: datetime | None
    last_event_seq: int
    created_at: datetime
    updated_at: datetime
    callback_url: str | None = None
    tenant: str = "default"
    rerun_of: str | None = None  # the failed or cancelled job this one re-runs
    traceparent: str | None = None  # W3C, of the enqueue that made it (shared/core/tracing.py)

    @classmethod
    def from_row(cls, row: dict) -> Job:
        # Every field at once, as the generated __init__ would set them (a column the row
        # lacks is None). That __init__ sets a frozen instance's 25 fields one
        # object.__setattr__ at a time: three times the cost, and a worker builds two a job.
        job = object.__new__(cls)
        job.__dict__.update({name: row.get(name) for name in cls.__dataclass_fields__})
        return job

    @property
    def is_terminal(self) -> bool:
        return self.job_status in TERMINAL_STATUSES

    def to_json(self) -> dict:
        """The contract's job object, as anyone holding the job id may read it (status is
        public). The lease token, the idempotency key, the tenant and the callback URL (which
        may carry a secret of the receiver's) stay private."""
        return {
            "id": self.id,
            "generationId": self.id,
            "kind": self.kind,
            "jobStatus": self.job_status,
            "progress": self.progress,
            "currentStep": self.current_step,
            "priority": self.priority,
            "attempts": self.attempts,
            "maxAttempts": self.max_attempts,
            "createdAt": iso(self.created_at),
            "runAt": iso(self.run_at),
            "processedAt": iso(self.processed_at),
            "finishedAt": iso(self.finished_at),
            "lastHeartbeat": iso(self.last_heartbeat),
            "result": self.result,
            "error": self.error,
            "cancelRequested": self.cancel_requested_at is not None,
            "rerunOf": self.rerun_of,
        }
