"""Claim latency on a small table and on a big one (mostly finished jobs), and a sweep over
the big one: finished rows must not slow the claim."""

from __future__ import annotations

import time

from bench.common import median, session_for
from shared.core import maintenance, queue

SMALL = 10_000
QUEUED = 100
SAMPLES = 200


def claim_latency(url: str, finished: int, queued: int, samples: int) -> float:
    session = session_for(url)
    session.run_sql("TRUNCATE jobs CASCADE")
    session.run_sql(
        "INSERT INTO jobs (kind, job_status, finished_at, created_at, run_at, progress)"
        " SELECT 'noop', 'completed', now() - interval '1 day', now() - interval '2 days', now() - interval '2 days', 100"
        " FROM generate_series(1, :n)",
        n=finished,
    )
    session.run_sql("INSERT INTO jobs (kind) SELECT 'noop' FROM generate_series(1, :n)", n=max(queued, samples))
    session.run_sql("VACUUM ANALYZE jobs")
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        job = queue.claim_next(session)
        timings.append((time.perf_counter() - started) * 1000)
        assert job is not None
    session.close()
    return median(timings)


def sweep_duration(url: str, repeats: int = 5) -> float:
    """Sweep over the table claim_latency left, median of `repeats`."""
    session = session_for(url)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        maintenance.sweep(session, stalled_after_seconds=900, retention_days=30)
        timings.append((time.perf_counter() - started) * 1000)
    session.close()
    return median(timings)


def measure(url: str, rows_large: int) -> dict:
    small = claim_latency(url, SMALL, QUEUED, SAMPLES)
    large = claim_latency(url, rows_large, QUEUED, SAMPLES)
    return {
        "claim_ms_10k": round(small, 3),
        f"claim_ms_{rows_large // 1000}k": round(large, 3),
        "ratio": round(large / small, 2),
        "sweep_ms_large": round(sweep_duration(url), 1),
        "rows_large": rows_large,
    }
