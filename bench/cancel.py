"""Cancel latency: from the cancel request leaving the client to the running handler seeing
`ctx.cancelled` (the handler logs the wall-clock moment). Measured from the request, not its
answer: the cancel reaches the handler by notification, often before the answer is back."""

from __future__ import annotations

import threading
import time

import httpx

from bench.common import AUTH, percentile
from local.stack import Stack
from shared.core.watcher import LISTEN_AFTER_SECONDS


def _wait_until_running(stack: Stack, job_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while httpx.get(stack.url("status"), params={"id": job_id}).json()["jobStatus"] != "running":
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.02)


def measure(stack: Stack, samples: int) -> dict:
    delays = []
    for _ in range(samples):
        job = httpx.post(stack.url("enqueue"), json={"kind": "cancel_clock"}, headers=AUTH).json()
        worker = threading.Thread(
            target=lambda j=job: httpx.post(stack.url("process"), json={"id": j["id"]}, timeout=60), daemon=True
        )
        worker.start()
        _wait_until_running(stack, job["id"])
        # Cancel a job that is well into its run, not one just claimed: past LISTEN_AFTER_SECONDS,
        # when its cancel comes by notification (a younger job's comes with the next lease check,
        # within CANCEL_CHECK_SECONDS: shared/core/watcher.py).
        time.sleep(LISTEN_AFTER_SECONDS + 0.25)
        asked = time.time()
        httpx.post(stack.url("cancel"), json={"id": job["id"]}, headers=AUTH)
        worker.join(30)
        logs = httpx.get(stack.url("status"), params={"id": job["id"]}).json()["logs"]
        seen = float(next(line["message"][5:] for line in logs if line["message"].startswith("seen=")))
        delays.append((seen - asked) * 1000)
    return {
        "samples": samples,
        "p50_ms": round(percentile(delays, 50), 1),
        "p99_ms": round(percentile(delays, 99), 1),
    }
