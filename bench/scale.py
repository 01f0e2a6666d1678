"""make scale: the local stack with several process instances and 1,000 jobs running at once.

What it does, on a throwaway PostgreSQL (fast settings, like the tests; pg_stat_statements
loaded to count statements):

1. The wait phase: `--wait-jobs` jobs (default 100) on one instance whose handlers only
   wait (no progress, no ledger writes while they wait), with the default settings. Every
   statement the database runs over a 30 s window is counted (pg_stat_statements, the
   monitor's own excluded): transactions a second per running job and per instance.
2. The scale phase: `--jobs` ledger jobs (bench/ledger.py, default 1,000) of about
   `--job-seconds` (60) each, with progress every 5 s, sent at once to `--instances`
   process instances (10, each with THREADS above its share). `--cancel` (100) of them are
   cancelled through the cancel function at random moments; at 30 s one instance is
   SIGKILLed with its jobs running, and sweep (called every 5 s, STALLED_AFTER_SECONDS=40)
   requeues them for the surviving instances. A monitor samples, every second: jobs
   running, database connections (in total, and per instance from /proc), the oldest
   heartbeat of the running jobs (those of the killed instance excepted until swept) and
   each instance's resident memory.

It reports, into build/scale.json and the "Scale" section of docs/benchmarks.md: jobs
running at once, peak connections in total and per instance, transactions a second per
running job while handlers wait, heartbeat age (max), cancel latency p50/p99 (from the
cancel request on the row to the ledger's `stopped` row, both stamped by the database),
resident memory per running job beyond the instance's base, jobs lost (not finished by
the end) and jobs whose handler ran to completion twice (counted by the ledger).

    python -m bench.scale [--instances 10] [--jobs 1000] [--job-seconds 60] [--cancel 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench import ledger
from local import postgres
from local.launcher import start_function
from local.pgbouncer import start_pgbouncer
from local.stack import DEV_TOKEN, REPO, Stack, wait_for_port
from shared.core.db import Session, connect
from shared.core.settings import Settings

OUT = REPO / "build" / "scale.json"
DOC = REPO / "docs" / "benchmarks.md"
MONITOR = "/* scale-monitor */"
STALLED_AFTER_SECONDS = 40
PROGRESS_EVERY_SECONDS = 5.0


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


# -- processes, as /proc sees them --------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found.extend(int(child) for child in task.read_text().split())
    return found


def process_tree(pid: int) -> list[int]:
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        tree.append(current)
        pending.extend(_children(current))
    return tree


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def _socket_inodes(pids: list[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    return inodes


def connections_to(ports: set[int], pids: list[int]) -> int:
    """Established TCP connections from these processes to 127.0.0.1 on any of `ports`."""
    inodes = _socket_inodes(pids)
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote_port = int(fields[2].split(":")[1], 16)
        if remote_port in ports and fields[3] == "01" and fields[9] in inodes:
            count += 1
    return count


# -- the stack ----------------------------------------------------------------------------


class Instance:
    """One process function server (functions-framework under gunicorn), as one Cloud Run
    instance of the process function would be."""

    def __init__(self, stack: Stack, port: int, threads: int, log_dir: Path):
        self.port = port
        self.url = f"http://127.0.0.1:{port}/"
        self.log = open(log_dir / f"process-{port}.log", "ab")  # closed in stop()
        # The one launcher: its server is ended with this run however the run ends (a SIGKILL too).
        env = {**os.environ, **stack.env, "THREADS": str(threads)}
        self.server = start_function("process", env, port=port, output=self.log)
        self.process = self.server.process
        self.killed = False

    def pids(self) -> list[int]:
        return [] if self.killed else process_tree(self.process.pid)

    def kill(self) -> None:
        self.server.stop(signal.SIGKILL)
        self.killed = True

    def stop(self) -> None:
        if not self.killed:
            self.server.stop(signal.SIGTERM, timeout=15)
        self.log.close()


class LockedSession:
    """One connection shared by the monitor's thread and the driver: one statement at a time."""

    def __init__(self, session: Session):
        self._session = session
        self._lock = threading.Lock()

    def run_sql(self, sql: str, /, **params):
        with self._lock:
            return self._session.run_sql(sql, **params)

    def close(self) -> None:
        with self._lock:
            self._session.close()


class Monitor(threading.Thread):
    """Samples the run every second on a connection of its own (its statements are marked
    so the statement counts leave them out)."""

    def __init__(self, url: str, db_ports: set[int], instances: list[Instance]):
        super().__init__(name="scale-monitor", daemon=True)
        self.session = LockedSession(Session(connect(Settings.from_env({"DATABASE_URL": url}).database, timeout=60)))
        self.db_ports = db_ports
        self.instances = instances
        self.excluded: set[str] = set()  # jobs whose heartbeat may stop (the killed instance's)
        self.samples: list[dict] = []
        self.stopped = threading.Event()

    def sample(self) -> dict:
        running, oldest = self.session.run_sql(
            f"{MONITOR} SELECT count(*), max(extract(epoch FROM now() - last_heartbeat)) FILTER"
            " (WHERE NOT (CAST(id AS text) = ANY(CAST(:excluded AS text[])))) FROM jobs WHERE job_status = 'running'",
            excluded=sorted(self.excluded) or [""],
        )[0]
        total = self.session.run_sql(
            f"{MONITOR} SELECT count(*) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )[0][0]
        per_instance = [connections_to(self.db_ports, instance.pids()) for instance in self.instances]
        memory = [rss_mb(instance.pids()) for instance in self.instances]
        return {
            "at": time.time(),
            "running": running,
            "oldestHeartbeat": float(oldest) if oldest is not None else None,
            "connections": total,
            "perInstance": per_instance,
            "rssMb": memory,
        }

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            with contextlib.suppress(Exception):
                self.samples.append(self.sample())

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)
        self.session.close()


# -- driving it ---------------------------------------------------------------------------


async def enqueue_all(client: httpx.AsyncClient, stack: Stack, bodies: list[dict]) -> list[str]:
    headers = {"Authorization": f"Bearer {DEV_TOKEN}"}
    semaphore = asyncio.Semaphore(32)

    async def one(body: dict) -> str:
        async with semaphore:
            answer = await client.post(stack.url("enqueue"), json=body, headers=headers)
            answer.raise_for_status()
            return answer.json()["id"]

    return await asyncio.gather(*(one(body) for body in bodies))


async def process(client: httpx.AsyncClient, instance: Instance, job_id: str | None) -> int | None:
    """One process invocation, held open until its job ends (None: the instance died)."""
    try:
        answer = await client.post(instance.url, json={"id": job_id} if job_id else {}, timeout=None)
        return answer.status_code
    except httpx.HTTPError:
        return None


def ledger_body(seconds: float, progress: bool) -> dict:
    steps = max(1, round(seconds / PROGRESS_EVERY_SECONDS)) if progress else 1
    return {
        "kind": "ledger",
        "steps": steps,
        "stepSeconds": seconds / steps,
        "progressEvery": 1 if progress else 0,
        "effects": False,
        "maxAttempts": 3,
    }


def statement_count(session: Session) -> int:
    rows = session.run_sql(
        f"{MONITOR} SELECT coalesce(sum(calls), 0) FROM pg_stat_statements"
        " WHERE query NOT LIKE '%scale-monitor%' AND query NOT LIKE '%pg_stat_statements%'"
        # Through a pooler each statement comes wrapped in BEGIN; SET LOCAL ...; COMMIT:
        # count the transactions, not their wrapping.
        " AND query !~* '^\\s*(BEGIN|COMMIT|ROLLBACK|SET LOCAL)'"
    )
    return int(rows[0][0])


async def wait_phase(client, stack: Stack, instance: Instance, monitor: Monitor, jobs: int, window: float) -> dict:
    """Handlers that only wait, on one instance: what waiting costs the database."""
    base_rss = rss_mb(instance.pids())
    ids = await enqueue_all(client, stack, [ledger_body(window + 60, progress=False) for _ in range(jobs)])
    calls = [asyncio.create_task(process(client, instance, job_id)) for job_id in ids]
    deadline = time.monotonic() + 120
    while monitor.sample()["running"] < jobs:
        assert time.monotonic() < deadline, "the wait phase's jobs did not all start"
        await asyncio.sleep(0.5)
    await asyncio.sleep(3)  # the claims' own statements are behind us
    monitor.session.run_sql(f"{MONITOR} SELECT pg_stat_statements_reset()")
    started = time.monotonic()
    seen = [monitor.sample()]
    while time.monotonic() - started < window:
        await asyncio.sleep(1)
        seen.append(monitor.sample())
    statements = statement_count(monitor.session)
    elapsed = time.monotonic() - started
    rss = rss_mb(instance.pids())
    await cancel_all(client, stack, ids)
    await asyncio.gather(*calls)
    return {
        "jobs": jobs,
        "windowSeconds": round(elapsed, 1),
        "statements": statements,
        "transactionsPerSecondPerJob": round(statements / elapsed / jobs, 4),
        "transactionsPerSecondPerInstance": round(statements / elapsed, 2),
        "connectionsPerInstanceMax": max(sample["perInstance"][0] for sample in seen),
        # Only the batched heartbeat refreshes these jobs (no progress writes): its true age.
        "heartbeatAgeMaxSeconds": round(max(sample["oldestHeartbeat"] or 0 for sample in seen), 1),
        "memoryPerJobMb": round((rss - base_rss) / jobs, 3),
    }


async def cancel(client: httpx.AsyncClient, stack: Stack, job_id: str) -> None:
    headers = {"Authorization": f"Bearer {DEV_TOKEN}"}
    with contextlib.suppress(httpx.HTTPError):
        answer = await client.post(stack.url("cancel"), json={"generationId": job_id}, headers=headers)
        # A refused cancel would leave its job running and the cancel figures wrong: stop.
        assert answer.status_code != 429, f"cancel met its rate limit: {answer.text}"


async def cancel_all(client, stack: Stack, ids: list[str]) -> None:
    await asyncio.gather(*(cancel(client, stack, job_id) for job_id in ids))


async def cancel_later(client, stack: Stack, job_id: str, delay: float) -> None:
    await asyncio.sleep(delay)
    await cancel(client, stack, job_id)


async def sweep_and_rerun(client, stack: Stack, survivors: list[Instance], stop: asyncio.Event, runs: list) -> None:
    """Cloud Scheduler's part: sweep every 5 s; each job it requeues gets a process call."""
    turn = 0
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), 5)
        with contextlib.suppress(httpx.HTTPError):
            answer = await client.post(stack.url("sweep"), json={})
            for _ in range(answer.json().get("requeued", 0)):
                runs.append(asyncio.create_task(process(client, survivors[turn % len(survivors)], None)))
                turn += 1


def kill_at(job_seconds: float) -> float:
    """When one instance is killed: at 30 s, or halfway through shorter jobs."""
    return min(30.0, job_seconds / 2)


async def scale_phase(client, stack: Stack, instances: list[Instance], monitor: Monitor, args) -> dict:
    ids = await enqueue_all(client, stack, [ledger_body(args.job_seconds, progress=True) for _ in range(args.jobs)])
    assignment = {job_id: instances[i % len(instances)] for i, job_id in enumerate(ids)}
    victim = instances[-1]
    base_rss = {instance.port: rss_mb(instance.pids()) for instance in instances}
    began = time.monotonic()
    runs = [asyncio.create_task(process(client, instance, job_id)) for job_id, instance in assignment.items()]
    cancelled = random.sample(ids, args.cancel)
    cancels = [
        asyncio.create_task(cancel_later(client, stack, job_id, random.uniform(5, args.job_seconds * 0.8)))
        for job_id in cancelled
    ]
    stop = asyncio.Event()
    sweeper = asyncio.create_task(sweep_and_rerun(client, stack, instances[:-1], stop, runs))
    await asyncio.sleep(max(0.0, kill_at(args.job_seconds) - (time.monotonic() - began)))
    monitor.excluded = {job_id for job_id, instance in assignment.items() if instance is victim}
    victim.kill()
    deadline = began + args.job_seconds * 2 + STALLED_AFTER_SECONDS + 120
    while time.monotonic() < deadline:
        left = monitor.session.run_sql(
            f"{MONITOR} SELECT count(*) FROM jobs WHERE job_status IN ('queued', 'running')"
        )[0][0]
        if not left:
            break
        await asyncio.sleep(2)
    stop.set()
    await sweeper
    await asyncio.gather(*cancels)
    await asyncio.wait_for(asyncio.gather(*runs), 60)
    return summarise(monitor, ids, cancelled, assignment, victim, base_rss, time.monotonic() - began)


def summarise(monitor, ids, cancelled, assignment, victim, base_rss, seconds) -> dict:
    session = monitor.session
    states = dict(
        session.run_sql(
            f"{MONITOR} SELECT job_status, count(*) FROM jobs WHERE CAST(id AS text) = ANY(CAST(:ids AS text[]))"
            " GROUP BY job_status",
            ids=ids,
        )
    )
    lost = session.run_sql(
        f"{MONITOR} SELECT count(*) FROM jobs WHERE CAST(id AS text) = ANY(CAST(:ids AS text[]))"
        " AND job_status NOT IN ('completed', 'cancelled')",
        ids=ids,
    )[0][0]
    latencies = [
        float(row[0])
        for row in session.run_sql(
            f"{MONITOR} SELECT extract(epoch FROM min(l.at) - j.cancel_requested_at) FROM jobs j"
            f" JOIN {ledger.TABLE} l ON l.job_id = j.id AND l.event = 'stopped'"
            " WHERE CAST(j.id AS text) = ANY(CAST(:ids AS text[])) GROUP BY j.id, j.cancel_requested_at",
            ids=cancelled,
        )
    ]
    # Cloud Run bills an instance while it serves a request: from the first ledger row an
    # instance's worker wrote to its last (its jobs ran concurrently in between).
    busy = session.run_sql(
        f"{MONITOR} SELECT pid, extract(epoch FROM max(at) - min(at)) FROM {ledger.TABLE}"
        " WHERE CAST(job_id AS text) = ANY(CAST(:ids AS text[])) GROUP BY pid",
        ids=ids,
    )
    samples = [sample for sample in monitor.samples if sample["at"] >= time.time() - seconds - 5]
    per_instance_peak = max((max(sample["perInstance"]) for sample in samples), default=0)
    memory = []
    for index, instance in enumerate(monitor.instances):
        if instance is victim:
            continue
        jobs_here = sum(1 for job_id, owner in assignment.items() if owner is instance)
        peak = max((sample["rssMb"][index] for sample in samples), default=0)
        memory.append(round((peak - base_rss[instance.port]) / max(jobs_here, 1), 3))
    return {
        "jobs": len(ids),
        "instances": len(monitor.instances),
        "seconds": round(seconds, 1),
        "final": states,
        "runningAtOncePeak": max((sample["running"] for sample in samples), default=0),
        "connectionsPeak": max((sample["connections"] for sample in samples), default=0),
        "connectionsPerInstancePeak": per_instance_peak,
        "heartbeatAgeMaxSeconds": round(max((sample["oldestHeartbeat"] or 0 for sample in samples), default=0), 1),
        "cancelled": len(cancelled),
        "cancelLatencyP50Ms": round(1000 * percentile(latencies, 50)) if latencies else None,
        "cancelLatencyP99Ms": round(1000 * percentile(latencies, 99)) if latencies else None,
        "cancelSamples": len(latencies),
        "memoryPerJobMbMedian": round(statistics.median(memory), 3) if memory else None,
        "memoryPerJobMbMax": round(max(memory), 3) if memory else None,
        "memoryPerJobMbByInstance": memory,
        "lost": lost,
        "completedTwice": len([job for job in ledger.completed_more_than_once(session) if job in set(ids)]),
        "instanceSeconds": round(sum(float(seconds) for _, seconds in busy)),
        "runs": sum(runs for job, runs in ledger.runs_per_job(session).items() if job in set(ids)),
    }


async def drive(stack: Stack, instances: list[Instance], monitor: Monitor, args) -> dict:
    limits = httpx.Limits(max_connections=args.jobs * 2 + 200, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        waiting = await wait_phase(client, stack, instances[0], monitor, args.wait_jobs, args.wait_window)
        print(f"wait phase: {json.dumps(waiting)}", flush=True)
        scaled = await scale_phase(client, stack, instances, monitor, args)
        print(f"scale phase: {json.dumps(scaled)}", flush=True)
    return {"wait": waiting, "scale": scaled}


# -- the report ---------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def markdown(results: dict) -> str:
    wait, scale, settings = results["wait"], results["scale"], results["settings"]
    heartbeat_limit = settings["HEARTBEAT_SECONDS"] + 5
    p99 = scale["cancelLatencyP99Ms"]
    rows = [
        ("jobs running at once (peak)", f"{scale['runningAtOncePeak']} of {scale['jobs']}", "1,000"),
        (
            "database connections, peak: in total / per process instance",
            f"{scale['connectionsPeak']} / {scale['connectionsPerInstancePeak']}",
            f"≤ 3 per instance: {verdict(scale['connectionsPerInstancePeak'] <= 3)}",
        ),
        (
            f"transactions/s per running job while handlers wait ({wait['jobs']} jobs, one instance)",
            f"{wait['transactionsPerSecondPerJob']}",
            f"≤ 0.1: {verdict(wait['transactionsPerSecondPerJob'] <= 0.1)}",
        ),
        (
            "transactions/s per instance for checks and heartbeats, same run",
            f"{wait['transactionsPerSecondPerInstance']}",
            f"≤ 3: {verdict(wait['transactionsPerSecondPerInstance'] <= 3)}",
        ),
        (
            "heartbeat age, max over running jobs: handlers only waiting / scale run (progress every 5 s)",
            f"{wait['heartbeatAgeMaxSeconds']} / {scale['heartbeatAgeMaxSeconds']} s",
            f"≤ {heartbeat_limit:g} s: {verdict(max(wait['heartbeatAgeMaxSeconds'], scale['heartbeatAgeMaxSeconds']) <= heartbeat_limit)}",
        ),
        (
            f"cancel latency p50 / p99 ({scale['cancelSamples']} running jobs cancelled)",
            f"{scale['cancelLatencyP50Ms']} / {p99} ms",
            f"p99 ≤ 1 s: {verdict(p99 is not None and p99 <= 1000)}",
        ),
        (
            "resident memory per running job beyond the base, median / max of instances",
            f"{scale['memoryPerJobMbMedian']} / {scale['memoryPerJobMbMax']} MB",
            f"≤ 1 MB: {verdict((scale['memoryPerJobMbMax'] or 0) <= 1)}",
        ),
        ("jobs lost", f"{scale['lost']}", f"0: {verdict(scale['lost'] == 0)}"),
        (
            "jobs whose handler ran to completion twice (ledger)",
            f"{scale['completedTwice']}",
            f"0: {verdict(scale['completedTwice'] == 0)}",
        ),
    ]
    table = "\n".join(f"| {a} | {b} | {c} |" for a, b, c in rows)
    return f"""## Scale

Measured {results["at"]} by `make scale` on {results["cores"]} cores (shared with other work), PostgreSQL with
fast settings. {scale["jobs"]} ledger jobs (`bench/ledger.py`) of about {results["jobSeconds"]:g} s each, progress
every {PROGRESS_EVERY_SECONDS:g} s, sent at once to {scale["instances"]} process instances (functions-framework,
{results["threads"]} threads each, `DB_POOL_SIZE` 2); {scale["cancelled"]} cancelled at random moments; one
instance SIGKILLed at {kill_at(results["jobSeconds"]):g} s, its jobs requeued by sweep (`STALLED_AFTER_SECONDS` {STALLED_AFTER_SECONDS}) and run
by the others. Before that, the wait phase: {wait["jobs"]} jobs on one instance whose handlers only wait,
default settings, every statement counted with pg_stat_statements over {wait["windowSeconds"]:g} s. The run took
{scale["seconds"]:g} s; final states {json.dumps(scale["final"])}; {scale["runs"]} handler runs in the ledger; the
instances were busy for {scale["instanceSeconds"]} instance-seconds in all (from each one's first ledger row to its
last), against {scale["jobs"] * results["jobSeconds"]:g} job-seconds of work.

| measure | figure | target |
| --- | --- | --- |
{table}

"""


def replace_section(document: str, section: str) -> str:
    """The "## Scale" section replaced (or added at the end), every other section kept."""
    start = document.find("## Scale\n")
    if start < 0:
        return document.rstrip("\n") + "\n\n" + section
    following = document.find("\n## ", start + 1)
    end = len(document) if following < 0 else following + 1
    return document[:start] + section + document[end:]


def requests_sent(args: argparse.Namespace) -> dict[str, int]:
    """The most requests of each rate-limited action a run sends: every job is one enqueue
    (the wait phase's and the scale phase's), every wait job and chosen job one cancel."""
    return {
        "enqueue": args.wait_jobs + args.jobs,
        "jobs": args.wait_jobs + args.jobs,
        "cancel": args.wait_jobs + args.cancel,
    }


def rate_limits(args: argparse.Namespace) -> dict[str, str]:
    """The limits this run needs, set explicitly (the defaults are a tenant's, not a load
    test's): twice what it sends, so that no request of it meets a 429 however the windows
    fall (tests/test_scale_limits.py checks it with the real limiter)."""
    sent = requests_sent(args)
    return {
        "RATE_LIMIT_ENQUEUE": str(2 * sent["enqueue"]),
        "RATE_LIMIT_JOBS": str(2 * sent["jobs"]),
        "RATE_LIMIT_CANCEL": str(2 * sent["cancel"]),
    }


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--job-seconds", type=float, default=60.0)
    parser.add_argument("--cancel", type=int, default=100)
    parser.add_argument("--wait-jobs", type=int, default=100)
    parser.add_argument("--wait-window", type=float, default=45.0)  # longer than one heartbeat interval
    parser.add_argument("--no-doc", action="store_true", help="write build/scale.json only")
    parser.add_argument(
        "--pgbouncer",
        action="store_true",
        help="the functions reach PostgreSQL through PgBouncer in transaction mode (build/scale-pgbouncer.json only)",
    )
    return parser.parse_args(argv)


def main() -> int:
    args = arguments()
    per_instance = -(-args.jobs // args.instances)
    threads = max(per_instance, args.wait_jobs) + 40  # room for the jobs sweep hands back
    settings = {"HEARTBEAT_SECONDS": 30.0, "CANCEL_CHECK_SECONDS": 0.5, "DB_POOL_SIZE": 2}
    server = postgres.throwaway_server(options="-c shared_preload_libraries=pg_stat_statements -c max_connections=400")
    bouncer = start_pgbouncer(server.port, pool_size=20) if args.pgbouncer else None
    through = (
        {"DATABASE_URL": bouncer.url_for("postgres"), "DATABASE_DIRECT_URL": server.url, "DB_POOLER": "transaction"}
        if bouncer
        else {}
    )
    log_dir = REPO / "build" / "scale-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack.on_free_ports(
        database_url=server.url,
        persistent=False,
        scheduler=False,
        log_dir=log_dir,
        extra_env={
            "JOB_HANDLERS": "ledger=bench.ledger:ledger_job",
            "STALLED_AFTER_SECONDS": str(STALLED_AFTER_SECONDS),
            "THREADS": "64",
            "MAX_OPEN_STREAMS": "10",
            **rate_limits(args),
            **through,
        },
    )
    instances: list[Instance] = []
    monitor = None
    try:
        stack.start()
        with contextlib.closing(Session(connect(Settings.from_env({"DATABASE_URL": server.url}).database))) as admin:
            admin.run_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            ledger.install(admin)
        instances = [Instance(stack, postgres.free_port(), threads, log_dir) for _ in range(args.instances)]
        for instance in instances:
            wait_for_port(instance.port, timeout=60, process=instance.process)
        # Per instance: its connections to PostgreSQL and, with one, to the pooler.
        monitor = Monitor(server.url, {server.port, *([bouncer.port] if bouncer else [])}, instances)
        monitor.start()
        measured = asyncio.run(drive(stack, instances, monitor, args))
    finally:
        if monitor is not None:
            monitor.stop()
        for instance in instances:
            instance.stop()
        stack.stop()
        if bouncer is not None:
            bouncer.remove()
        server.stop(mode="immediate")
        postgres.remove(server)
    results = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "machine": platform.platform(),
        "jobSeconds": args.job_seconds,
        "threads": threads,
        "settings": settings,
        "through": "PgBouncer 1.18, transaction mode" if args.pgbouncer else "direct",
        **measured,
    }
    out = OUT.with_name("scale-pgbouncer.json") if args.pgbouncer else OUT
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    section = markdown(results)
    print(section)
    if not (args.no_doc or args.pgbouncer):
        DOC.write_text(replace_section(DOC.read_text(), section))
    return 0


if __name__ == "__main__":
    sys.exit(main())
