"""A LISTEN worker's enqueue to handler start, the figure the Cloud Tasks path is held to:
PgQueuer (requirements-bench.txt, never in a function bundle) on the same throwaway
PostgreSQL, in the same run, in a database of its own.

Its worker runs in a process of its own (`python -m bench.listen_peer --worker DSN`), as a
worker would, woken by PostgreSQL's NOTIFY; its handler prints the job's number and its own
clock. This process enqueues one job at a time through PgQueuer's own API and times each from
just before the enqueue to the handler's start, as bench/tasks_path.py does for ours.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import time
from datetime import timedelta

from bench.common import fresh_database, median
from local import postgres

DATABASE = "listen_peer"
ENTRYPOINT = "start_clock"
WARM_UP = 5


def available() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("pgqueuer", "asyncpg"))


def _dsn(server: postgres.PostgresServer) -> str:
    return server.url_for(DATABASE)


async def _worker(dsn: str) -> None:
    import asyncpg  # noqa: PLC0415
    from pgqueuer import AsyncpgDriver, Queries, QueueManager  # noqa: PLC0415

    manager = QueueManager(Queries(AsyncpgDriver(await asyncpg.connect(dsn))))

    @manager.entrypoint(ENTRYPOINT)
    async def start_clock(job) -> None:
        print(f"{job.payload.decode()} {time.time()}", flush=True)

    print("ready", flush=True)
    await manager.run(batch_size=1, dequeue_timeout=timedelta(seconds=5))


async def _install(dsn: str) -> None:
    import asyncpg  # noqa: PLC0415
    from pgqueuer import AsyncpgDriver, Queries  # noqa: PLC0415

    connection = await asyncpg.connect(dsn)
    try:
        await Queries(AsyncpgDriver(connection)).install()
    finally:
        await connection.close()


async def _latencies(dsn: str, samples: int) -> list[float]:
    import asyncpg  # noqa: PLC0415
    from pgqueuer import AsyncpgDriver, Queries  # noqa: PLC0415

    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.listen_peer", "--worker", dsn, stdout=asyncio.subprocess.PIPE
    )
    connection = await asyncpg.connect(dsn)
    try:
        assert (await asyncio.wait_for(worker.stdout.readline(), 60)).strip() == b"ready"
        queries = Queries(AsyncpgDriver(connection))
        latencies = []
        for number in range(WARM_UP + samples):
            sent = time.time()
            await queries.enqueue(ENTRYPOINT, str(number).encode())
            started = await asyncio.wait_for(worker.stdout.readline(), 30)
            seen, clock = started.decode().split()
            assert int(seen) == number, (seen, number)
            if number >= WARM_UP:
                latencies.append((float(clock) - sent) * 1000)
        return latencies
    finally:
        await connection.close()
        worker.terminate()
        await worker.wait()


def measure(server: postgres.PostgresServer, samples: int) -> dict | None:
    """PgQueuer's LISTEN worker, enqueue to handler start: p50 and p99 of `samples` jobs sent one
    at a time; None when PgQueuer is not installed (make bench installs it)."""
    if not available():
        print("  PgQueuer is not installed (pip install -r requirements-bench.txt): no LISTEN figure")
        return None
    fresh_database(server, DATABASE)
    asyncio.run(_install(_dsn(server)))
    latencies = asyncio.run(_latencies(_dsn(server), samples))
    ordered = sorted(latencies)
    return {
        "p50_ms": round(median(latencies), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))], 2),
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", metavar="DSN", required=True, help="run the worker on this database")
    asyncio.run(_worker(parser.parse_args().worker))


if __name__ == "__main__":
    main()
