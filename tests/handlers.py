"""Handlers the tests register. Module-level state lets a test see what ran."""

from __future__ import annotations

import threading
import time
from collections import Counter

from shared.core.errors import JobCancelled

RUNS: Counter = Counter()  # job payload "tag" -> times its handler returned
_runs_lock = threading.Lock()
GATES: dict[str, threading.Event] = {}  # payload "gate" -> event the handler waits for
STARTED: dict[str, threading.Event] = {}


def noop(payload: dict, ctx) -> dict:
    return {"ok": True}


def count(payload: dict, ctx) -> dict:
    """Counts each run by tag, so a test can prove every job ran exactly once."""
    with _runs_lock:
        RUNS[payload["tag"]] += 1
    return {"tag": payload["tag"]}


def fail_until(payload: dict, ctx) -> dict:
    """Fails its first `failures` attempts, then succeeds."""
    if ctx.attempt <= payload.get("failures", 0):
        raise RuntimeError(f"attempt {ctx.attempt} failed on purpose")
    return {"attempt": ctx.attempt}


def steps(payload: dict, ctx) -> dict:
    for i in range(payload.get("steps", 3)):
        ctx.progress(100 * (i + 1) // (payload.get("steps", 3) + 1), step="Processing", message=f"step {i + 1}")
        ctx.log(f"line {i + 1}")
    return {"steps": payload.get("steps", 3)}


def wait_for_cancel(payload: dict, ctx) -> dict:
    """Announces it started, then waits (up to `seconds`) for a cancel or a gate."""
    STARTED.setdefault(payload["gate"], threading.Event()).set()
    gate = GATES.setdefault(payload["gate"], threading.Event())
    deadline = time.monotonic() + payload.get("seconds", 10)
    while time.monotonic() < deadline and not gate.is_set():
        if ctx.cancelled.wait(0.01):
            return {"stopped": "cancelled"}
    return {"stopped": "gate"}


def not_json(payload: dict, ctx):
    return {"when": object()}


def stops_uncancelled(payload: dict, ctx):
    """Raises JobCancelled though nobody asked it to stop: a handler's bug."""
    raise JobCancelled()


ALL = {
    "noop": noop,
    "count": count,
    "fail_until": fail_until,
    "steps": steps,
    "wait_for_cancel": wait_for_cancel,
    "not_json": not_json,
    "stops_uncancelled": stops_uncancelled,
}


def slow_count(payload: dict, ctx) -> dict:
    """Works through timed steps with progress and log lines, then counts its completion."""
    steps = payload.get("steps", 10)
    for step in range(1, steps + 1):
        if ctx.cancelled.wait(payload.get("stepSeconds", 0.2)):
            return {"stopped": step}
        ctx.log(f"step {step}")
        ctx.progress(100 * step // (steps + 1))
    with _runs_lock:
        RUNS[payload["tag"]] += 1
    return {"tag": payload["tag"]}


def paced(payload: dict, ctx) -> dict:
    """Steps at a pace, each with a status message of its own, a log line and a preview that
    grows: what a page following it must keep current (the browser tests)."""
    steps, seconds = payload.get("steps", 5), payload.get("stepSeconds", 0.5)
    text = ""
    for step in range(1, steps + 1):
        if ctx.cancelled.wait(seconds):
            return {"stepsDone": step - 1}
        text += f"Paragraph {step} of the draft.\n"
        ctx.progress(100 * step // (steps + 1), step="Processing", message=f"{step} of {steps} steps done")
        ctx.log(f"Step {step} of {steps} done")
        ctx.emit("preview", {"format": "markdown", "content": text})
    return {"stepsDone": steps}
