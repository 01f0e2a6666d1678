"""Pressure: the claim while vacuum is held back, after the `idle_in_tx` and `active_readers`
cells of hardbyte/postgresql-job-queue-benchmarking.

Jobs keep flowing through the real statements (enqueue, claim, one progress write,
complete), one job at a time, while another connection holds vacuum back: an idle
transaction that took an XID (`idle_in_tx`), or an open REPEATABLE READ transaction that
took its snapshot (`active_reader`). The claim is the runner's: from the remembered floor
(shared/core/claimfloor.py), with the full claim every CLAIM_RESCAN_SECONDS (its default).
Its latency is sampled clean (before the hold), after each checkpoint's number of jobs, and
after the hold is released and the table vacuumed once. Besides latency, the pages one claim
reads (EXPLAIN's shared buffers, which a loaded machine cannot blur): the claim from the floor
(`pages`) and the full claim a rescan runs (`full_pages`). Cells run with one tenant (the
claim's fast path) and with two tenants whose jobs alternate (every claim weighs both: the
fairness probes run).

The `procrastinate_idle_in_tx` cell runs Procrastinate's own SQL functions (its schema.sql,
from the PyPI package pinned in requirements-bench.txt) through the same probe in the same
database: defer, fetch (timed), finish. It has no progress write: Procrastinate keeps none.

Nothing is mocked: a throwaway PostgreSQL, the project's own SQL, through pg8000.

    python -m bench.pressure [--checkpoints 10000,50000,100000] [--cells idle_in_tx,...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from bench.common import fresh_database, median, percentile, session_for, shared_buffers, statement_text
from local import postgres
from shared.core import queue
from shared.core.claimfloor import ClaimFloor
from shared.core.db import Session
from shared.core.settings import Settings

SAMPLE = 300  # claims timed at each checkpoint
BATCH = 50  # jobs enqueued at a time: the queue stays short, as in the harness
HOLDS = {
    "idle_in_tx": "BEGIN; SELECT txid_current();",
    "active_reader": "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM jobs;",
}
CHECKPOINTS = (10_000, 50_000, 100_000)  # the issue's


def _pages(session: Session, sql: str, **params) -> int:
    """Pages one statement reads, the median of three: a one-off (a plan cached by a PL/pgSQL
    function being made again) does not count."""
    return int(median([shared_buffers(session, sql, **params) for _ in range(3)]))


class Ours:
    """The project's lifecycle through the runner's claim (the floor, the periodic full claim)."""

    def __init__(self, session: Session, tenants: tuple[str, ...]):
        self.session = session
        self.tenants = tenants
        self.floor = ClaimFloor(Settings().claim_rescan_seconds)

    def reset(self) -> None:
        self.session.run_sql("TRUNCATE jobs CASCADE")
        self.session.run_sql("VACUUM ANALYZE jobs")
        self.session.run_sql("VACUUM ANALYZE job_events")

    def vacuum(self) -> None:
        self.session.run_sql("VACUUM jobs")
        self.session.run_sql("VACUUM job_events")

    def enqueue_batch(self) -> None:
        for number in range(BATCH):
            self.session.row("enqueue_job", tenant=self.tenants[number % len(self.tenants)], kind="noop", payload="{}",
                             priority=0, run_at=None, max_attempts=3, idempotency_key=None, callback_url=None,
                             rerun_of=None)  # fmt: skip

    def claim(self) -> queue.Job:
        return self.floor.claim_next(self.session)

    @property
    def full_claims(self) -> int:
        return self.floor.full_claims

    def finish(self, job: queue.Job) -> None:
        lease = queue.Lease.of(job)
        queue.record_progress(self.session, lease, 50, "Halfway", None)
        queue.complete(self.session, lease, None)
        self.floor.count_end(job.tenant)  # as the runner does

    def claim_pages(self) -> dict:
        floors = json.dumps(self.floor.floors())
        return {
            "pages": _pages(self.session, statement_text("claim_next_job_from_floor"), floors=floors),
            "full_pages": _pages(self.session, statement_text("claim_next_job")),
        }


class Procrastinate:
    """Procrastinate's own functions (procrastinate_fetch_job_v2 and finish_job_v1), its
    schema installed beside ours: the same probe, the same hold, the same database."""

    def __init__(self, session: Session, tenants: tuple[str, ...]):
        self.session = session
        if not session.run_sql("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")[0][0]:
            session.run_sql(procrastinate_schema())
        self.worker = session.run_sql("SELECT worker_id FROM procrastinate_register_worker_v1()")[0][0]

    def reset(self) -> None:
        self.session.run_sql("TRUNCATE procrastinate_jobs CASCADE")
        self.session.run_sql("VACUUM ANALYZE procrastinate_jobs")
        self.session.run_sql("VACUUM ANALYZE procrastinate_events")

    def vacuum(self) -> None:
        self.session.run_sql("VACUUM procrastinate_jobs")
        self.session.run_sql("VACUUM procrastinate_events")

    def enqueue_batch(self) -> None:
        for _ in range(BATCH):
            self.session.run_sql(
                "SELECT procrastinate_defer_jobs_v1(ARRAY[ROW('default', 'noop', 0, NULL, NULL, '{}'::jsonb, NULL)"
                "::procrastinate_job_to_defer_v1])"
            )

    def claim(self) -> int:
        return self.session.run_sql(self._fetch(), worker=self.worker)[0][0]

    def finish(self, job: int) -> None:
        self.session.run_sql("SELECT procrastinate_finish_job_v1(:id, 'succeeded', false)", id=job)

    def claim_pages(self) -> dict:
        return {"pages": _pages(self.session, self._fetch(), worker=self.worker)}

    @staticmethod
    def _fetch() -> str:
        return "SELECT id FROM procrastinate_fetch_job_v2(NULL, CAST(:worker AS bigint))"


def procrastinate_schema() -> str:
    """schema.sql from the installed package, read as a file: importing procrastinate would
    need psycopg and libpq, which nothing here uses."""
    try:
        distribution = metadata.distribution("procrastinate")
    except metadata.PackageNotFoundError:
        raise SystemExit("The Pressure section needs Procrastinate: pip install -r requirements-bench.txt") from None
    return Path(str(distribution.locate_file("procrastinate/sql/schema.sql"))).read_text()


def _run_jobs(queue_under_test, count: int) -> list[float]:
    """Run `count` jobs through their lifecycle; the claim's milliseconds for each."""
    timings: list[float] = []
    while len(timings) < count:
        queue_under_test.enqueue_batch()
        for _ in range(BATCH):
            started = time.perf_counter()
            job = queue_under_test.claim()
            timings.append((time.perf_counter() - started) * 1000)
            queue_under_test.finish(job)
    return timings


def _claim_pages(queue_under_test) -> dict:
    """What one claim reads, with a batch queued; the batch then goes through (the queue stays short)."""
    queue_under_test.enqueue_batch()
    pages = queue_under_test.claim_pages()
    _run_jobs(queue_under_test, BATCH)
    return pages


def _sample(queue_under_test) -> tuple[list[float], dict]:
    """SAMPLE claims timed and, for ours, how many of them were full claims: a rescan's, once
    every CLAIM_RESCAN_SECONDS, reads what the hold keeps, and it alone can make a p99."""
    before = getattr(queue_under_test, "full_claims", None)
    timings = _run_jobs(queue_under_test, SAMPLE)
    return timings, {} if before is None else {"full_claims": queue_under_test.full_claims - before}


def _figures(sampled: tuple[list[float], dict], pages: dict) -> dict:
    timings, counts = sampled
    p50, p99 = round(percentile(timings, 50), 3), round(percentile(timings, 99), 3)
    return {"p50_ms": p50, "p99_ms": p99, **pages, **counts}


def cell(url: str, hold: str, tenants: tuple[str, ...], checkpoints: tuple[int, ...], kind: Callable = Ours) -> dict:
    """One cell: clean, after each checkpoint with the hold on, then released and vacuumed."""
    session, holder = session_for(url), session_for(url)
    try:
        under_test = kind(session, tenants)
        under_test.reset()
        _run_jobs(under_test, SAMPLE)  # warm
        figures = {"clean": _figures(_sample(under_test), _claim_pages(under_test))}
        holder.conn.execute_simple(HOLDS[hold])
        done = 0
        for checkpoint in checkpoints:
            _run_jobs(under_test, checkpoint - done - SAMPLE - BATCH)
            pages = _claim_pages(under_test)
            figures[str(checkpoint)] = _figures(_sample(under_test), pages)
            done = checkpoint
            print(f"    {checkpoint:,} jobs: {figures[str(checkpoint)]}", flush=True)
        holder.conn.execute_simple("ROLLBACK")
        under_test.vacuum()
        figures["released"] = _figures(_sample(under_test), _claim_pages(under_test))
        last = figures[str(checkpoints[-1])]
        figures["p99_ratio"] = round(last["p99_ms"] / figures["clean"]["p99_ms"], 2)
        figures["p99_ratio_at"] = checkpoints[-1]
        figures["released_ratio"] = round(figures["released"]["p99_ms"] / figures["clean"]["p99_ms"], 2)
        return figures
    finally:
        holder.close()
        session.close()


# name: (the hold, the tenants, the queue under test, the most jobs it runs: None for every
# checkpoint). Two tenants make every claim weigh both: the hinted claim takes each tenant's
# running count from the instance (claim-design.md, "running counts from the floors"), and
# only the full claim, once a rescan period, counts the churn the hold keeps.
CELLS = {
    "idle_in_tx": ("idle_in_tx", ("default",), Ours, None),
    "idle_in_tx_two_tenants": ("idle_in_tx", ("a", "b"), Ours, None),
    "active_reader": ("active_reader", ("default",), Ours, None),
    "procrastinate_idle_in_tx": ("idle_in_tx", ("default",), Procrastinate, None),
}


def measure(url: str, checkpoints: tuple[int, ...], cells: tuple[str, ...] = tuple(CELLS)) -> dict:
    if any(CELLS[name][2] is Procrastinate for name in cells):
        procrastinate_schema()  # before the hours of the other cells, not after them
    results = {}
    for name in cells:
        hold, tenants, kind, most = CELLS[name]
        print(f"  {name}", flush=True)
        own = tuple(point for point in checkpoints if most is None or point <= most) or checkpoints[:1]
        results[name] = cell(url, hold, tenants, own, kind)
        print(f"  {name}: {results[name]}", flush=True)
    return {"checkpoints": list(checkpoints), "cells": results}


def main() -> int:
    """The Pressure section alone, on a durable throwaway PostgreSQL like `make bench`'s."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoints", default=",".join(map(str, CHECKPOINTS)))
    parser.add_argument("--cells", default=",".join(CELLS), help="some of: " + ", ".join(CELLS))
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    cells = tuple(args.cells.split(","))
    if unknown := set(cells) - set(CELLS):
        parser.error(f"no cell named {', '.join(sorted(unknown))}")
    server = postgres.throwaway_server(durable=True)
    try:
        results = measure(fresh_database(server, "pressure"), tuple(map(int, args.checkpoints.split(","))), cells)
    finally:
        server.stop()
        postgres.remove(server)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
