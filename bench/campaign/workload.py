"""The campaign's jobs: one handler whose behaviour the payload chooses, and the seeded plan.

Every run writes the ledger (bench/ledger.py): started, one effect per step, stopped or
finished. The result names the invocation, so the checker can tell which run's completion
the queue recorded.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from bench.ledger import LedgerRun

# How the plan mixes the kinds (weights): mostly quick jobs, enough slow ones to be hit by
# faults, and "quiet" ones that only wait (no progress writes), the likeliest to come back
# from a frozen instance as zombies that reach their completion.
MIX = {"instant": 38, "slow": 22, "quiet": 8, "flaky": 10, "doomed": 5, "cancelled": 9, "scheduled": 8}


def campaign_job(payload: dict, ctx) -> dict:
    """`steps` steps of `stepSeconds` each with progress; fails while attempt ≤ failUntilAttempt."""
    run = LedgerRun(ctx)
    run.record("started")
    steps = int(payload.get("steps", 0))
    for step in range(1, steps + 1):
        if ctx.cancelled.wait(float(payload.get("stepSeconds", 0.2))):
            run.record("stopped", step - 1)
            return {"stopped": step - 1, "invocation": run.invocation}
        run.record("effect", step)
        if payload.get("progress", True):
            ctx.progress(100 * step // (steps + 1), step="Processing", message=f"step {step} of {steps}")
    if ctx.attempt <= int(payload.get("failUntilAttempt", 0)):
        raise RuntimeError(f"attempt {ctx.attempt} fails on purpose")
    run.record("finished", steps)
    return {"invocation": run.invocation, "attempt": ctx.attempt}


@dataclass
class PlannedJob:
    kind: str
    body: dict
    cancel_after: float | None = None  # seconds after enqueue; "cancelled" jobs only
    duplicate: bool = False  # its Cloud Task arrives twice at once
    late_copy: bool = False  # and once more, long after it ran
    job_id: str | None = None
    enqueued_at: float | None = None
    extra: dict = field(default_factory=dict)


def plan(rng: random.Random, count: int) -> list[PlannedJob]:
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=count)
    return [_planned(rng, kind) for kind in kinds]


def _planned(rng: random.Random, kind: str) -> PlannedJob:
    payload: dict = {"steps": 0}
    options: dict = {"maxAttempts": 3}
    cancel_after = None
    if kind in ("slow", "cancelled"):
        payload = {"steps": rng.randint(3, 10), "stepSeconds": round(rng.uniform(0.2, 1.0), 2)}
    if kind == "quiet":
        payload = {"steps": 1, "stepSeconds": round(rng.uniform(2.0, 8.0), 2), "progress": False}
    if kind == "cancelled":
        cancel_after = rng.uniform(0.0, 6.0)  # queued, just claimed, mid-run, or already done
    if kind == "flaky":
        payload = {"steps": rng.randint(0, 3), "stepSeconds": 0.2, "failUntilAttempt": rng.randint(1, 2)}
    if kind == "doomed":
        payload = {"steps": 1, "stepSeconds": 0.1, "failUntilAttempt": 99}
        options["maxAttempts"] = 2
    if kind == "scheduled":
        options["runAt"] = rng.uniform(5.0, 40.0)  # seconds from enqueue; made absolute when sent
        payload = {"steps": rng.randint(0, 2), "stepSeconds": 0.2}
    body = {"kind": "campaign", **payload, **options}
    return PlannedJob(kind, body, cancel_after, duplicate=rng.random() < 0.05, late_copy=rng.random() < 0.03)
