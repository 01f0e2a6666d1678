"""Process invocations per second through HTTP: 4 callers, one no-op job each, until the
queue is empty."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from bench.common import fill_queue, http_client, median
from local.stack import Stack

CALLERS = 4


def rate(stack: Stack, url: str, jobs: int) -> float:
    fill_queue(url, jobs)
    counted = []

    def call(_):
        return http_client().post(stack.url("process")).status_code

    started = time.perf_counter()
    with ThreadPoolExecutor(CALLERS) as pool:
        while True:
            codes = list(pool.map(call, range(CALLERS)))
            counted.extend(code for code in codes if code == 200)
            if 204 in codes:
                break
    return len(counted) / (time.perf_counter() - started)


def measure(stack: Stack, url: str, jobs: int, repeats: int) -> int:
    return round(median([rate(stack, url, jobs) for _ in range(repeats)]))
