"""Status propagation: from a handler's progress call to the event's arrival at an SSE
client (the handler stamps each progress message with the wall clock)."""

from __future__ import annotations

import threading
import time

from bench.common import percentile
from client.api import JobQueueClient
from local.stack import DEV_TOKEN, Stack


def measure(stack: Stack, samples: int) -> dict:
    client = JobQueueClient(
        stack.url("enqueue"), stack.url("status"), stack.url("cancel"), stack.url("process"), token=DEV_TOKEN
    )
    job = client.enqueue({"kind": "progress_clock", "count": samples, "interval": 0.03})
    delays = []
    worker = threading.Thread(target=lambda: client.process(job["id"]), daemon=True)
    stream = client.follow(job["id"])
    worker.start()
    for event in stream:
        if event.event == "progress" and event.data.get("message", "").startswith("t="):
            delays.append((time.time() - float(event.data["message"][2:])) * 1000)
        if event.event == "done":
            break
    worker.join(30)
    return {
        "samples": len(delays),
        "p50_ms": round(percentile(delays, 50), 1),
        "p99_ms": round(percentile(delays, 99), 1),
    }
