"""Enqueue over HTTP: latency on a warm server, one client; then the rate of 8 at once."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from bench.common import AUTH, http_client, percentile
from local.stack import Stack

WARM_UP = 50
CLIENTS = 8


def measure(stack: Stack, samples: int) -> dict:
    body = {"kind": "noop"}
    with httpx.Client(timeout=30) as http:
        for _ in range(WARM_UP):
            http.post(stack.url("enqueue"), json=body, headers=AUTH)
        latencies = []
        for _ in range(samples):
            started = time.perf_counter()
            answer = http.post(stack.url("enqueue"), json=body, headers=AUTH)
            latencies.append((time.perf_counter() - started) * 1000)
            assert answer.status_code == 202

    def burst(_):
        return http_client().post(stack.url("enqueue"), json=body, headers=AUTH).status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        codes = list(pool.map(burst, range(samples)))
    rate = samples / (time.perf_counter() - started)
    assert set(codes) == {202}
    return {
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        f"rate_{CLIENTS}_clients_per_s": round(rate),
    }
