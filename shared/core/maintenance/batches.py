"""What every maintenance service shares: how much one statement may touch, and how many
times one tick may run it."""

from __future__ import annotations

from collections.abc import Callable

SWEEP_BATCH = 500
MAX_BATCHES = 100


def in_batches(run_batch: Callable[[], int], max_batches: int = MAX_BATCHES) -> int:
    """Run `run_batch` (which returns how many rows it touched) until a batch comes back
    short or `max_batches` ran; the total touched."""
    total = 0
    for _ in range(max_batches):
        touched = run_batch()
        total += touched
        if touched < SWEEP_BATCH:
            break
    return total
