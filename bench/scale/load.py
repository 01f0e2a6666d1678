"""make scale's load: the jobs it sends, the process calls that run them, the cancels, the
sweep that requeues a killed instance's jobs, and its two phases (handlers that only wait;
1,000 jobs with a crash)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time

import httpx

from bench.scale.checks import summarise
from bench.scale.monitor import MONITOR, Instance, Monitor
from bench.scale.procfs import rss_mb
from local.stack import DEV_TOKEN, Stack
from shared.core.db import Session

STALLED_AFTER_SECONDS = 40
PROGRESS_EVERY_SECONDS = 5.0


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


async def drive(stack: Stack, instances: list[Instance], monitor: Monitor, args) -> dict:
    limits = httpx.Limits(max_connections=args.jobs * 2 + 200, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        waiting = await wait_phase(client, stack, instances[0], monitor, args.wait_jobs, args.wait_window)
        print(f"wait phase: {json.dumps(waiting)}", flush=True)
        scaled = await scale_phase(client, stack, instances, monitor, args)
        print(f"scale phase: {json.dumps(scaled)}", flush=True)
    return {"wait": waiting, "scale": scaled}
