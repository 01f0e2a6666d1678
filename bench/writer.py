"""The newsletter's Gemini writer against the local emulator of Gemini's streaming endpoint,
through the functions on the stack (the process function runs the real SDK):

- first preview: from the model's first chunk leaving the emulator to the preview event with
  its text reaching a status stream (Server-Sent Events from the status function). The first
  chunk holds a whole summary, the next ones come every 0.3 s. Target: within 2 s.
- cancel: a generation whose next chunk never comes is cancelled over HTTP; from the cancel
  request to the emulator seeing the writer's connection closed. Target: within 1 s.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
from httpx_sse import connect_sse

from bench.common import AUTH, percentile
from local.gemini_emulator import Script
from local.stack import Stack

CHUNK_EVERY_SECONDS = 0.3


def _pieces(entries: int) -> list[str]:
    items = [
        json.dumps({"entry": f"e{n}", "summary": f"Summary number {n}, one sentence long."})
        for n in range(1, entries + 1)
    ]
    return ['{"summaries": [' + items[0] + ","] + [item + "," for item in items[1:-1]] + [items[-1] + "]}"]


def _enqueue(stack: Stack) -> str:
    body = {
        "dateRange": {"from": "2025-01-01", "to": "2025-01-07"},
        "selectedSources": [source.id for source in stack.demo_sources],
        "outputFormat": "markdown",
    }
    return httpx.post(stack.url("enqueue"), json=body, headers=AUTH, timeout=30).json()["id"]


def _process_in_background(stack: Stack, job_id: str) -> threading.Thread:
    worker = threading.Thread(
        target=lambda: httpx.post(stack.url("process"), json={"id": job_id}, timeout=120), daemon=True
    )
    worker.start()
    return worker


def _first_preview_arrival(stack: Stack, job_id: str) -> float | None:
    """When the first preview holding the model's text reached the stream (monotonic)."""
    with httpx.Client(timeout=60) as http:
        with connect_sse(http, "GET", stack.url("status"), params={"id": job_id, "stream": "1"}) as source:
            for sse in source.iter_sse():
                if sse.event == "preview" and "Summary number 1" in sse.data:
                    return time.monotonic()
                if sse.event == "done":
                    return None
    return None


def first_preview_ms(stack: Stack) -> float:
    stack.gemini.script(Script(pieces=_pieces(8), delay=CHUNK_EVERY_SECONDS, first_delay=0.0))
    before = len(stack.gemini.calls)
    job_id = _enqueue(stack)
    arrival: list[float | None] = []
    watcher = threading.Thread(target=lambda: arrival.append(_first_preview_arrival(stack, job_id)), daemon=True)
    watcher.start()
    worker = _process_in_background(stack, job_id)
    watcher.join(60)
    worker.join(60)
    call = stack.gemini.calls[before]
    assert arrival and arrival[0] is not None and call.first_chunk_at is not None, "no preview reached the stream"
    return (arrival[0] - call.first_chunk_at) * 1000


def cancel_ms(stack: Stack) -> float:
    stack.gemini.script(Script(pieces=_pieces(8), stall_after=2))  # a chunk is pending for ever
    before = len(stack.gemini.calls)
    job_id = _enqueue(stack)
    worker = _process_in_background(stack, job_id)
    deadline = time.monotonic() + 60
    while not (len(stack.gemini.calls) > before and stack.gemini.calls[before].chunks_sent >= 2):
        assert time.monotonic() < deadline, "the generation never started"
        time.sleep(0.01)
    call = stack.gemini.calls[before]
    asked = time.monotonic()
    httpx.post(stack.url("cancel"), json={"id": job_id}, headers=AUTH, timeout=30)
    assert stack.gemini.wait_for_end(call, 30), "the writer's connection stayed open"
    worker.join(60)
    return (call.ended_at - asked) * 1000


def measure(stack: Stack, samples: int) -> dict:
    previews = [first_preview_ms(stack) for _ in range(samples)]
    cancels = [cancel_ms(stack) for _ in range(samples)]
    return {
        "samples": samples,
        "chunk_every_seconds": CHUNK_EVERY_SECONDS,
        "first_preview_p50_ms": round(percentile(previews, 50), 1),
        "first_preview_max_ms": round(max(previews), 1),
        "cancel_p50_ms": round(percentile(cancels, 50), 1),
        "cancel_max_ms": round(max(cancels), 1),
    }
