"""Enqueue over HTTP: latency on a warm server, one client; then the rate of 8 at once; then
bulk enqueue, requests of BULK jobs from BULK_CLIENTS clients (jobs per second), beside
pgbench's single-row INSERT on the same server with as many clients (bench/insert_baseline.py),
measured just before and just after it, as a ratio."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from bench.common import AUTH, http_client, percentile
from bench.insert_baseline import Baseline
from local.postgres import PostgresServer
from local.stack import Stack

WARM_UP = 50
CLIENTS = 8
BULK = 1000
BULK_CLIENTS = 2


def measure(stack: Stack, server: PostgresServer, samples: int, baseline_seconds: int) -> dict:
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
        **bulk_beside_baseline(stack, Baseline(server, BULK_CLIENTS, baseline_seconds), max(4, samples // 50)),
    }


def bulk_beside_baseline(stack: Stack, baseline: Baseline, requests: int) -> dict:
    """Bulk jobs/s, and pgbench's single-row inserts/s before and after it (when pgbench is
    there), with the ratio of the first to their mean."""
    if not baseline.prepare():
        print("  no pgbench found (pg_config --bindir, PATH): bulk enqueue is reported without its baseline")
        return {"bulk_jobs_per_s": bulk_rate(stack, requests), "bulk_clients": BULK_CLIENTS}
    before = baseline.rate()
    bulk = bulk_rate(stack, requests)
    after = baseline.rate()
    inserts = (before + after) / 2
    print(f"  bulk {bulk:,} jobs/s; pgbench single-row INSERT {before:,.0f} then {after:,.0f}/s", flush=True)
    return {
        "bulk_jobs_per_s": bulk,
        "bulk_clients": BULK_CLIENTS,
        "single_insert_per_s": round(inserts),
        "single_insert_runs_per_s": [round(before), round(after)],
        "bulk_over_single_insert": round(bulk / inserts, 2),
    }


def bulk_rate(stack: Stack, requests: int) -> int:
    """Jobs per second through bulk requests of BULK jobs each, BULK_CLIENTS at once."""
    body = {"jobs": [{"kind": "noop", "n": number} for number in range(BULK)]}

    def send(_):
        answer = http_client().post(stack.url("enqueue"), json=body, headers=AUTH)
        return answer.status_code, {job["status"] for job in answer.json()["jobs"]}

    send(0)  # warm: the first bulk request's plan and pages
    started = time.perf_counter()
    with ThreadPoolExecutor(BULK_CLIENTS) as pool:
        answers = list(pool.map(send, range(requests)))
    elapsed = time.perf_counter() - started
    assert all(code == 200 and statuses == {202} for code, statuses in answers), answers[:3]
    return round(requests * BULK / elapsed)
