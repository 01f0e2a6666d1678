"""What tenants cost: the fair claim and the job list, as the tables grow.

1. Median claim latency with many queued rows, over one tenant and over many, beside the
   first-in-first-out claim it replaced (measured in the same run, on the same rows, with
   its old index recreated for it).
2. Median list latency (one page of 20) over a table of live and archived jobs: a tenant's
   first page, a page deep into its history, its "In Progress" (queued and running only),
   and the admin's first page.

    python -m bench.tenants [--quick]

Prints both tables and writes build/tenants.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from bench.common import fresh_database, session_for
from local import postgres
from local.stack import REPO
from shared.core import listing, queue
from shared.core.db import Session
from shared.core.listing import JobFilter

OUT = REPO / "build" / "tenants.json"

# The claim this one replaced: a global order, highest priority then oldest.
FIFO_CLAIM = """
WITH next AS (
    SELECT id FROM jobs WHERE job_status = 'queued' AND run_at <= now()
    ORDER BY priority DESC, run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
)
UPDATE jobs SET job_status = 'running', attempts = jobs.attempts + 1, worker_token = gen_random_uuid(),
    processed_at = now(), last_heartbeat = now(), updated_at = now()
FROM next WHERE jobs.id = next.id RETURNING jobs.id
"""


def fill(session: Session, queued: int, tenants: int, finished: int) -> None:
    session.run_sql("TRUNCATE jobs CASCADE")
    session.run_sql(
        "INSERT INTO jobs (tenant, kind, job_status, finished_at, processed_at, progress)"
        " SELECT 't' || (g % :tenants), 'noop', 'completed', now() - interval '1 day', now() - interval '1 day', 100"
        " FROM generate_series(1, :n) AS g",
        n=finished,
        tenants=tenants,
    )
    session.run_sql(
        "INSERT INTO jobs (tenant, kind, current_step) SELECT 't' || (g % :tenants), 'noop', 'Queued'"
        " FROM generate_series(1, :n) AS g",
        n=queued,
        tenants=tenants,
    )
    session.run_sql("VACUUM ANALYZE jobs")


def timed(claim, samples: int) -> float:
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        claim()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def measure(session: Session, queued: int, tenants: int, finished: int, samples: int) -> dict:
    fill(session, queued, tenants, finished)
    fair = timed(lambda: queue.claim_next(session), samples)
    fill(session, queued, tenants, finished)
    session.run_sql("CREATE INDEX fifo_claim_idx ON jobs (priority DESC, run_at, id) WHERE job_status = 'queued'")
    fifo = timed(lambda: session.run_sql(FIFO_CLAIM), samples)
    session.run_sql("DROP INDEX fifo_claim_idx")
    return {"queued": queued, "tenants": tenants, "finished": finished, "fair_ms": fair, "fifo_ms": fifo}


def fill_history(session: Session, live: int, archived: int, tenants: int, running: int) -> None:
    """`live` finished jobs in jobs and `archived` in jobs_archive over `tenants` tenants,
    created over the last year, and `running` running jobs per tenant."""
    spread = "now() - (g * interval '1 minute')"
    session.run_sql("TRUNCATE jobs, jobs_archive CASCADE")
    for table, count in (("jobs", live), ("jobs_archive", archived)):
        session.run_sql(
            f"INSERT INTO {table} (id, tenant, kind, job_status, created_at, finished_at, processed_at, progress)"
            f" SELECT gen_random_uuid(), 't' || (g % :tenants), 'noop', 'completed', {spread}, {spread}, {spread}, 100"
            " FROM generate_series(1, :n) AS g",
            n=count,
            tenants=tenants,
        )
    session.run_sql(
        "INSERT INTO jobs (tenant, kind, job_status, processed_at) SELECT 't' || (g % :tenants), 'noop', 'running', now()"
        " FROM generate_series(1, :n) AS g",
        n=running * tenants,
        tenants=tenants,
    )
    session.run_sql("VACUUM ANALYZE jobs")
    session.run_sql("VACUUM ANALYZE jobs_archive")


def list_figures(session: Session, live: int, archived: int, tenants: int, samples: int) -> list[dict]:
    fill_history(session, live, archived, tenants, running=5)
    first = listing.list_jobs(session, JobFilter("t1"))
    deep = JobFilter("t1")
    for _ in range(min(50, (live + archived) // tenants // 20 - 1)):  # 50 pages in: into the archive
        page = listing.list_jobs(session, deep)
        deep = JobFilter("t1", cursor=listing.decode_cursor(page.next_cursor))
    assert first.jobs
    cases = {
        "tenant, first page": JobFilter("t1"),
        "tenant, page 51": deep,
        "tenant, In Progress (queued, running)": JobFilter("t1", statuses=("queued", "running")),
        "admin, first page": JobFilter(None),
    }
    return [
        {"case": name, "ms": timed(lambda wanted=wanted: listing.list_jobs(session, wanted), samples)}
        for name, wanted in cases.items()
    ]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller tables (a smoke run)")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    cases = [(100, 1, 0), (100_000, 1, 0), (100_000, 20, 0), (100_000, 100, 0), (100_000, 20, 500_000)]
    server = postgres.throwaway_server(durable=True)
    rows = []
    try:
        session = session_for(fresh_database(server, "tenants"))
        print("queued   tenants  finished   fair claim (ms)  FIFO claim (ms)", flush=True)
        for queued, tenants, finished in cases:
            row = measure(session, max(queued // scale, 100), tenants, finished // scale, samples=200)
            rows.append(row)
            print(
                f"{row['queued']:>7,}  {row['tenants']:>7}  {row['finished']:>8,}   {row['fair_ms']:>15.3f}"
                f"  {row['fifo_ms']:>15.3f}",
                flush=True,
            )
        live, archived, tenants = 200_000 // scale, 800_000 // scale, 20
        print(f"\nlist, one page of 20: {live:,} live and {archived:,} archived jobs, {tenants} tenants", flush=True)
        listed = list_figures(session, live, archived, tenants, samples=200)
        for row in listed:
            print(f"{row['case']:<40} {row['ms']:>8.3f} ms", flush=True)
        session.close()
    finally:
        server.stop(mode="immediate")
        postgres.remove(server)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"claim": rows, "list": listed}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
