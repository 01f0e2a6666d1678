"""Handlers the benchmarks run."""

import time


def noop(payload: dict, ctx) -> None:
    return None


def progress_clock(payload: dict, ctx) -> None:
    """Progress events stamped with the wall clock when the handler reported them."""
    for i in range(payload.get("count", 100)):
        ctx.progress(i % 100, message=f"t={time.time()}")
        time.sleep(payload.get("interval", 0.03))


def start_clock(payload: dict, ctx) -> None:
    """Logs the wall-clock moment the handler started (the Tasks path's end point)."""
    ctx.log(f"t={time.time()}")


def cancel_clock(payload: dict, ctx) -> None:
    """Waits for a cancel and logs the wall-clock moment it saw it."""
    if ctx.cancelled.wait(payload.get("seconds", 30)):
        ctx.log(f"seen={time.time()}")
