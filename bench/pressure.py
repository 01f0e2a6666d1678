"""Pressure: the claim while vacuum is held back, after the `idle_in_tx` and `active_readers`
cells of hardbyte/postgresql-job-queue-benchmarking.

Jobs keep flowing through the real statements (enqueue, claim, one progress write,
complete), one job at a time, while another connection holds vacuum back: an idle
transaction that took an XID (`idle_in_tx`), or an open REPEATABLE READ transaction that
took its snapshot (`active_reader`). The claim's own latency is sampled clean (before the
hold), after each checkpoint's number of jobs, and after the hold is released and the table
vacuumed once. Cells run with one tenant (the claim's fast path) and with two tenants whose
jobs alternate (every claim weighs both: the fairness probes run).

Nothing is mocked: a throwaway PostgreSQL, the project's own SQL, through pg8000.
"""

from __future__ import annotations

import re
import time

from bench.common import percentile, session_for
from shared.core import queue
from shared.core.db import STATEMENTS, Session

SAMPLE = 300  # claims timed at each checkpoint
BATCH = 50  # jobs enqueued at a time: the queue stays short, as in the harness
HOLDS = {
    "idle_in_tx": "BEGIN; SELECT txid_current();",
    "active_reader": "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM jobs;",
}


def _enqueue_batch(session: Session, tenants: tuple[str, ...]) -> None:
    for number in range(BATCH):
        session.row("enqueue_job", tenant=tenants[number % len(tenants)], kind="noop", payload="{}", priority=0,
                    run_at=None, max_attempts=3, idempotency_key=None, callback_url=None, rerun_of=None)  # fmt: skip


def _run_jobs(session: Session, count: int, tenants: tuple[str, ...]) -> list[float]:
    """Run `count` jobs through their lifecycle; the claim's milliseconds for each."""
    timings: list[float] = []
    while len(timings) < count:
        _enqueue_batch(session, tenants)
        for _ in range(BATCH):
            started = time.perf_counter()
            job = queue.claim_next(session)
            timings.append((time.perf_counter() - started) * 1000)
            lease = queue.Lease.of(job)
            queue.record_progress(session, lease, 50, "Halfway", None)
            queue.complete(session, lease, None)
    return timings


def _claim_pages(session: Session, tenants: tuple[str, ...]) -> int:
    """Shared buffers one claim touches (EXPLAIN ANALYZE, rolled back): what the dead rows and
    index entries cost it, in a figure a loaded machine cannot blur."""
    _enqueue_batch(session, tenants)
    sql = "\n".join(line for line in STATEMENTS["claim_next_job"].splitlines() if not line.startswith("--"))
    session.run_sql("BEGIN")
    try:
        plan = "\n".join(row[0] for row in session.run_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql))
    finally:
        session.run_sql("ROLLBACK")
    _run_jobs(session, BATCH, tenants)  # the batch goes through, the queue stays short
    found = re.search(r"Buffers: shared hit=(\d+)(?: read=(\d+))?", plan)
    return int(found.group(1)) + int(found.group(2) or 0)


def _figures(timings: list[float], pages: int) -> dict:
    return {
        "p50_ms": round(percentile(timings, 50), 3),
        "p99_ms": round(percentile(timings, 99), 3),
        "pages": pages,
    }


def _reset(session: Session) -> None:
    session.run_sql("TRUNCATE jobs CASCADE")
    session.run_sql("VACUUM ANALYZE jobs")
    session.run_sql("VACUUM ANALYZE job_events")


def cell(url: str, hold: str, tenants: tuple[str, ...], checkpoints: tuple[int, ...]) -> dict:
    """One cell: clean, after each checkpoint with the hold on, then released and vacuumed."""
    session, holder = session_for(url), session_for(url)
    try:
        _reset(session)
        _run_jobs(session, SAMPLE, tenants)  # warm
        figures = {"clean": _figures(_run_jobs(session, SAMPLE, tenants), _claim_pages(session, tenants))}
        holder.conn.execute_simple(HOLDS[hold])
        done = 0
        for checkpoint in checkpoints:
            _run_jobs(session, checkpoint - done - SAMPLE - BATCH, tenants)
            pages = _claim_pages(session, tenants)
            figures[str(checkpoint)] = _figures(_run_jobs(session, SAMPLE, tenants), pages)
            done = checkpoint
        holder.conn.execute_simple("ROLLBACK")
        session.run_sql("VACUUM jobs")
        session.run_sql("VACUUM job_events")
        figures["released"] = _figures(_run_jobs(session, SAMPLE, tenants), _claim_pages(session, tenants))
        last = figures[str(checkpoints[-1])]
        figures["p99_ratio"] = round(last["p99_ms"] / figures["clean"]["p99_ms"], 2)
        figures["released_ratio"] = round(figures["released"]["p99_ms"] / figures["clean"]["p99_ms"], 2)
        return figures
    finally:
        holder.close()
        session.close()


def measure(url: str, checkpoints: tuple[int, ...]) -> dict:
    results = {}
    for name, hold, tenants in (
        ("idle_in_tx", "idle_in_tx", ("default",)),
        ("idle_in_tx_two_tenants", "idle_in_tx", ("a", "b")),
        ("active_reader", "active_reader", ("default",)),
    ):
        results[name] = cell(url, hold, tenants, checkpoints)
        print(f"  {name}: {results[name]}", flush=True)
    return {"checkpoints": list(checkpoints), "cells": results}
