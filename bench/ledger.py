"""The ledger: what the handlers of the scale and fault-campaign runs did, written by the
handlers themselves into a table the queue does not manage.

The queue's own rows say how a job ended; they cannot say how often its handler actually
ran, or ran to its end, which is what "run twice" means to a user (two emails sent). So
each run appends one row per event: `started` when the handler is entered, `effect` for
each side effect (a step), `stopped` when it returns early on a cancel, and `finished` when
it returns normally, each with the job id, the attempt and an id of this handler call (the
invocation). Rows are written in their own short transactions through the job's
`ctx.session()`, and never deleted by the queue (archiving and retention do not touch it).

    install(session)                         # once, before the run (CREATE TABLE IF NOT EXISTS)
    JOB_HANDLERS=ledger=bench.ledger:ledger_job   # the functions run it as kind "ledger"
    runs_per_job(session)                    # {job id: handler calls started}
    completions_per_job(session)             # {job id: handler calls that ran to their end}
    completed_more_than_once(session)        # the job ids a user would see done twice

Payload of `ledger_job` (every field optional):
    steps         10     side effects, one per step
    stepSeconds   1.0    wait before each step (wakes at once on a cancel)
    progressEvery 1      a progress write every this many steps (0: none)
    effects       true   false: record only started and finished (handlers that only wait)
    failAtStep    null   raise at this step (after its effect), to exercise retries
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from shared.core.errors import DatabaseUnavailable

TABLE = "bench_ledger"
EVENTS = ("started", "effect", "stopped", "finished")

# The ledger is a tool of the benchmarks, not a lifecycle step: its few statements live here.
INSTALL = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id         bigserial PRIMARY KEY,
    job_id     uuid NOT NULL,
    attempt    integer NOT NULL,
    invocation text NOT NULL,
    event      text NOT NULL CHECK (event IN ('started', 'effect', 'stopped', 'finished')),
    step       integer,
    pid        integer NOT NULL,
    at         timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS {TABLE}_job_idx ON {TABLE} (job_id, event)
"""
RECORD = (
    f"INSERT INTO {TABLE} (job_id, attempt, invocation, event, step, pid)"
    " VALUES (CAST(:job_id AS uuid), :attempt, :invocation, :event, :step, :pid)"
)
COUNT_BY_JOB = f"SELECT CAST(job_id AS text), count(*) FROM {TABLE} WHERE event = :event GROUP BY job_id"

# A ledger row is evidence: keep trying through a database blip rather than lose it.
RECORD_RETRY_SECONDS = 60.0


def install(session) -> None:
    """Create the ledger table (and its index) if missing. Run once, before the handlers."""
    session.run_sql(INSTALL)


def reset(session) -> None:
    session.run_sql(f"TRUNCATE {TABLE}")


def _with_retry(write: Callable[[], Any], retry_for: float = RECORD_RETRY_SECONDS) -> None:
    deadline = time.monotonic() + retry_for
    while True:
        try:
            write()
            return
        except DatabaseUnavailable:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


class LedgerRun:
    """One handler call's writer: every row it appends carries the same invocation id."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.invocation = uuid.uuid4().hex
        self.pid = os.getpid()

    def record(self, event: str, step: int | None = None) -> None:
        def write() -> None:
            with self.ctx.session() as session:
                session.run_sql(
                    RECORD,
                    job_id=self.ctx.job_id,
                    attempt=self.ctx.attempt,
                    invocation=self.invocation,
                    event=event,
                    step=step,
                    pid=self.pid,
                )

        _with_retry(write)


def ledger_job(payload: dict, ctx) -> dict:
    """A handler that does `steps` side effects, each written to the ledger (see the module)."""
    steps = int(payload.get("steps", 10))
    step_seconds = float(payload.get("stepSeconds", 1.0))
    progress_every = int(payload.get("progressEvery", 1))
    effects = bool(payload.get("effects", True))
    fail_at = payload.get("failAtStep")
    run = LedgerRun(ctx)
    run.record("started")
    for step in range(1, steps + 1):
        if ctx.cancelled.wait(step_seconds):
            run.record("stopped", step - 1)
            return {"stepsDone": step - 1, "invocation": run.invocation}
        if effects:
            run.record("effect", step)
        if progress_every and step % progress_every == 0:
            ctx.progress(100 * step // (steps + 1), message=f"step {step} of {steps}")
        if fail_at is not None and step == fail_at:
            raise RuntimeError(f"failed at step {step} on purpose")
    run.record("finished", steps)
    return {"stepsDone": steps, "invocation": run.invocation}


def _counts(session, event: str) -> dict[str, int]:
    return {job_id: count for job_id, count in session.run_sql(COUNT_BY_JOB, event=event)}


def runs_per_job(session) -> dict[str, int]:
    """Job id -> how many handler calls started on it."""
    return _counts(session, "started")


def completions_per_job(session) -> dict[str, int]:
    """Job id -> how many handler calls ran to their end (returned normally)."""
    return _counts(session, "finished")


def completed_more_than_once(session) -> list[str]:
    """The jobs whose handler ran to completion twice or more: must be none."""
    return sorted(job_id for job_id, count in completions_per_job(session).items() if count > 1)


def rows(session, job_id: str) -> list[dict]:
    """One job's ledger, in order."""
    found = session.run_sql(
        f"SELECT attempt, invocation, event, step, pid FROM {TABLE} WHERE job_id = CAST(:job_id AS uuid) ORDER BY id",
        job_id=job_id,
    )
    return [dict(zip(("attempt", "invocation", "event", "step", "pid"), row)) for row in found]
