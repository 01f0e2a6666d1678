"""Core throughput: the real runner draining no-op jobs with N worker processes, against two
ideals, the simplest pg8000 loop of claim and complete: with the plain claim (the first due
job, no fairness) in SQL frozen in bench/sql/ (the fixed baseline: it does not move with the
queue's SQL), and with the queue's own fair claim and completion. All three interleaved so
that the machine's noise hits them alike. The runner is judged against the plain ideal, so
that the fair claim's own price shows (an ideal running the fair claim once hid a 30 % drop);
the fair ideal's own ratio to the plain one is that price."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bench.common import env_for, fill_queue, median, session_for
from shared.core.db import STATEMENTS, Pool
from shared.core.handlers import HandlerRegistry
from shared.core.runner import Runner
from shared.core.settings import Settings

WORKERS = (1, 2, 4, 8)
BASELINE_SQL = Path(__file__).parent / "sql"


def plain_statements() -> tuple[str, str]:
    """The fixed baseline's claim and completion (bench/sql/plain_claim.sql says why frozen)."""
    return tuple((BASELINE_SQL / f"{name}.sql").read_text() for name in ("plain_claim", "plain_complete"))


def queue_statements() -> tuple[str, str]:
    """The queue's own fair claim and completion, as they stand."""
    return STATEMENTS["claim_next_job"], STATEMENTS["complete_job"]


def _ideal_worker(statements: tuple[str, str], url: str, done: multiprocessing.Value) -> None:
    """The simplest loop doing the same two transactions: claim, then complete."""
    import pg8000.native  # noqa: PLC0415

    session = session_for(url)
    claim, complete = (pg8000.native.PreparedStatement(session.conn, sql) for sql in statements)
    count = 0
    while True:
        rows = claim.run()
        if not rows:
            break
        row = dict(zip([c["name"] for c in claim.columns], rows[0]))
        complete.run(id=str(row["id"]), token=str(row["worker_token"]), result="null")
        count += 1
    with done.get_lock():
        done.value += count
    session.close()


def _core_worker(url: str, done: multiprocessing.Value) -> None:
    """The real runner: claim, heartbeat watcher, handler, fenced completion, logs."""
    sys.stdout = open(os.devnull, "w")
    settings = Settings.from_env(env_for(url))
    pool = Pool(settings)
    runner = Runner(pool, HandlerRegistry.from_settings(settings), settings)
    count = 0
    while runner.run_next() is not None:
        count += 1
    with done.get_lock():
        done.value += count
    pool.close()


def drain(url: str, worker: Callable, processes: int, jobs: int) -> float:
    """Jobs per second to empty a queue of `jobs` with `processes` workers."""
    fill_queue(url, jobs)
    done = multiprocessing.Value("i", 0)
    started = time.perf_counter()
    children = [multiprocessing.Process(target=worker, args=(url, done)) for _ in range(processes)]
    for child in children:
        child.start()
    for child in children:
        child.join()
    elapsed = time.perf_counter() - started
    assert done.value == jobs, f"drained {done.value} of {jobs}"
    return jobs / elapsed


def measure(url: str, jobs: int, repeats: int) -> list[dict]:
    rows = []
    plain_worker = partial(_ideal_worker, plain_statements())
    fair_worker = partial(_ideal_worker, queue_statements())
    for workers in WORKERS:
        plain, fair, core = [], [], []
        for _ in range(repeats):
            plain.append(drain(url, plain_worker, workers, jobs))
            fair.append(drain(url, fair_worker, workers, jobs))
            core.append(drain(url, _core_worker, workers, jobs))
        rows.append(
            {
                "workers": workers,
                "plain_jobs_per_s": round(median(plain)),
                "fair_jobs_per_s": round(median(fair)),
                "core_jobs_per_s": round(median(core)),
                "ratio": round(median(core) / median(plain), 2),
                "fair_ratio": round(median(core) / median(fair), 2),
                "fair_price": round(median(fair) / median(plain), 2),
            }
        )
        print(f"  core x{workers}: {rows[-1]}", flush=True)
    return rows


# The one-worker ladder: the plain loop, then the runner's obligations added one at a time, so
# that each run shows what each costs. A runner must build the job records (the handler's,
# and the answer's) and write the two log lines the metrics count (job.started, job.ended);
# the queue claims from a remembered floor. What the last step adds to the one before it is
# the runner's own machinery: lease keeper, watcher, pool, job context, fencing checks.
LADDER = (
    ("plain loop", ()),
    ("+ the two job records", ("records",)),
    ("+ the two log lines", ("records", "logs")),
    ("+ the claim from a floor", ("records", "logs", "floor")),
)


def _ladder_worker(parts: tuple[str, ...], url: str, done: multiprocessing.Value) -> None:
    import pg8000.native  # noqa: PLC0415

    from shared.core import log, metrics, queue  # noqa: PLC0415
    from shared.core.jobs import Job  # noqa: PLC0415

    sys.stdout = open(os.devnull, "w")  # as the runner's: the lines are written, to nowhere
    session = session_for(url)
    plain, complete = (pg8000.native.PreparedStatement(session.conn, sql) for sql in plain_statements())
    from_floor = pg8000.native.PreparedStatement(session.conn, STATEMENTS["claim_next_job_from_one_floor"])
    floor, count = None, 0
    while True:
        claim = from_floor if floor is not None else plain
        rows = claim.run(**floor) if floor is not None else claim.run()
        if not rows:
            break
        row = dict(zip([c["name"] for c in claim.columns], rows[0]))
        job = Job.from_row(row) if "records" in parts else None
        if "logs" in parts:
            log.info("Job started", jobId=job.id, **metrics.started_fields(job))
        if "floor" in parts:
            floor = queue.head_of(job)
        ended = complete.run(id=str(row["id"]), token=str(row["worker_token"]), result="null")
        if "records" in parts:
            ended = Job.from_row(dict(zip([c["name"] for c in complete.columns], ended[0])))
        if "logs" in parts:
            log.info("Job completed", jobId=job.id, **metrics.ended_fields(ended, "completed"))
        count += 1
    with done.get_lock():
        done.value += count
    session.close()


def ladder(url: str, jobs: int, repeats: int) -> list[dict]:
    """One worker: jobs/s of each step and of the runner, each a ratio to the plain loop."""
    steps = [(name, partial(_ladder_worker, parts)) for name, parts in LADDER] + [("the runner", _core_worker)]
    runs: dict[str, list[float]] = {name: [] for name, _ in steps}
    for _ in range(repeats):
        for name, worker in steps:
            runs[name].append(drain(url, worker, 1, jobs))
    plain = median(runs[LADDER[0][0]])
    rows = [{"step": name, "jobs_per_s": round(median(rates)), "of_plain": round(median(rates) / plain, 3)}
            for name, rates in runs.items()]  # fmt: skip
    for row in rows:
        print(f"  ladder: {row}", flush=True)
    return rows
