"""One campaign run: start the stack (a durable PostgreSQL, PgBouncer unless --direct, the
functions, two process instances), drive the plan through the faults, wait for the queue to
drain, stop everything it started."""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import ledger
from bench.campaign import checks, workload
from bench.campaign.clients import Deliveries, Ticks, cancel, due_in, enqueue
from bench.campaign.faults import Faults, ProcessInstances, admin_session
from bench.campaign.observe import Answers, ConnectionSampler, StreamFollower
from local import postgres
from local.functions import NO_RATE_LIMITS
from local.pgbouncer import start_pgbouncer
from local.stack import REPO, Stack
from shared.core.migrate import apply_migrations

STALLED_AFTER = 5.0
RETRY_MAX = 4.0
POOL_SIZE = 4
PROCESS_INSTANCES = 2
DELIVERY_WORKERS = 40  # the emulated queue's max_concurrent_dispatches
POOLER_POOL_SIZE = 20  # the pooler's server connections to PostgreSQL
FOLLOWED_STREAMS = 20


CAMPAIGN_ENV = {
    "JOB_HANDLERS": "campaign=bench.campaign.workload:campaign_job",
    "HEARTBEAT_SECONDS": "1",
    "STALLED_AFTER_SECONDS": str(STALLED_AFTER),
    "RETRY_BASE_SECONDS": "1",
    "RETRY_MAX_SECONDS": str(RETRY_MAX),
    "DB_TIMEOUT_SECONDS": "3",
    "DB_POOL_SIZE": str(POOL_SIZE),
    "THREADS": "64",
    "MAX_OPEN_STREAMS": "40",
    "MAX_STREAMS_PER_CALLER": "40",  # every stream comes from this one address
    "STREAM_MAX_SECONDS": "30",
    # One caller makes all the campaign's requests: the rate limits would only get in the way.
    **NO_RATE_LIMITS,
}


class Campaign:
    """One run: start the stack, drive the plan through the faults, drain, judge, stop."""

    def __init__(self, seed: int, count: int, fault_seconds: float, only: tuple[str, ...] = (), pooler: bool = True):
        self.seed, self.fault_seconds, self.only, self.use_pooler = seed, fault_seconds, only, pooler
        self.bouncer = None
        self.rng = random.Random(seed)
        self.planned = workload.plan(self.rng, count)
        self.answers = Answers()
        self.followers: list[StreamFollower] = []
        self.stream_threads: list[threading.Thread] = []
        self.instances: ProcessInstances | None = None

    def start(self) -> None:
        # Durable (fsync, synchronous commit): the campaign crashes the server, and a commit it
        # acknowledged must survive that, as on Cloud SQL.
        self.server = postgres.throwaway_server(durable=True)
        self.url = self.server.url
        session = admin_session(self.url, timeout=60)
        try:
            apply_migrations(session)
            ledger.install(session)
        finally:
            session.close()
        self.log_dir = log_dir = _log_dir()
        env = dict(CAMPAIGN_ENV)
        if self.use_pooler:
            # The functions reach PostgreSQL through PgBouncer in transaction mode, as production
            # may; migrations and the LISTEN connections go direct (DATABASE_DIRECT_URL).
            self.bouncer = start_pgbouncer(self.server.port, pool_size=POOLER_POOL_SIZE)
            env |= {
                "DATABASE_URL": self.bouncer.url_for("postgres"),
                "DATABASE_DIRECT_URL": self.url,
                "DB_POOLER": "transaction",
            }
        # Cloud Tasks is the emulator, on the production code path: enqueue pushes each job's
        # task, a retry gets a new one, and sweep pushes one for every job it requeues.
        self.stack = Stack.on_free_ports(
            database_url=self.url,
            extra_env=env,
            scheduler=False,
            log_dir=log_dir,
            tasks_port=0,
            tasks_max_concurrent=DELIVERY_WORKERS,
        )
        self.stack.start()
        env = {**os.environ, **self.stack.env}
        self.instances = ProcessInstances(self.stack.servers["process"], env, PROCESS_INSTANCES, log_dir)
        self.faults = Faults(
            self.instances, self.server, self.url, STALLED_AFTER, random.Random(self.seed + 1), self.bouncer, self.only
        )
        self.sampler = ConnectionSampler(self.url, pooled=self.bouncer is not None)
        self.sampler.start()
        self.deliveries = Deliveries(self.instances, self.answers).start()
        self.ticks = Ticks(self.stack, self.instances, self.answers)
        self.ticks.start()
        self.cancels = ThreadPoolExecutor(8, thread_name_prefix="cancel")

    def drive(self) -> None:
        """Enqueue the plan over the first 70% of the fault window while faults go off."""
        self.started = time.monotonic()
        self.fault_until = self.started + self.fault_seconds
        injector = threading.Thread(target=_inject, args=(self.faults, self.rng, self.fault_until), daemon=True)
        injector.start()
        followed = set(self.rng.sample(range(len(self.planned)), min(FOLLOWED_STREAMS, len(self.planned))))
        pacing = self.fault_seconds * 0.7 / len(self.planned)
        for index, job in enumerate(self.planned):
            enqueue(self.stack, job, self.answers)
            self._schedule(job)
            if index in followed:
                self._follow(job, index)
            time.sleep(max(0.0, self.started + (index + 1) * pacing - time.monotonic()))
        injector.join()

    def _schedule(self, job: workload.PlannedJob) -> None:
        """Its Cloud Task once more for some (at the same time, as a duplicate delivery), and
        long after for others (a late one); its cancel. The task itself is enqueue's."""
        at = time.monotonic() + due_in(job)
        if job.duplicate:
            self.deliveries.add(job.job_id, at)
        if job.late_copy:
            self.deliveries.add(job.job_id, at + 30.0)
        if job.cancel_after is not None:
            timer = threading.Timer(
                job.cancel_after, lambda: self.cancels.submit(cancel, self.stack, job, self.answers)
            )
            timer.daemon = True
            timer.start()

    def _follow(self, job: workload.PlannedJob, index: int) -> None:
        follower = StreamFollower(self.stack.url("status"), job.job_id, random.Random(self.seed + index), self.answers)
        self.followers.append(follower)
        # Two minutes past the faults, or past its own start: on a loaded machine the paced
        # enqueues fall behind the fault window, and a follower given the window's deadline
        # began already past it (seed 411796: 5 of 20 streams never followed at all).
        deadline = max(self.fault_until, time.monotonic()) + 120
        thread = threading.Thread(target=follower.follow, args=(deadline,), daemon=True)
        thread.start()
        self.stream_threads.append(thread)

    def drain(self) -> tuple[float | None, float]:
        """Seconds until every job was terminal after the faults stopped (None past the bound)."""
        faults_stopped = time.monotonic()
        bound = 2 * STALLED_AFTER + 3 * RETRY_MAX + 60  # + the latest scheduled run-at and a late copy
        drained_after = _wait_for_drain(self.url, [job.job_id for job in self.planned], faults_stopped + bound)
        for thread in self.stream_threads:
            thread.join(max(0.0, faults_stopped + bound - time.monotonic()))
        self.ticks.stopped.set()
        self.deliveries.stop()
        self.cancels.shutdown(wait=False, cancel_futures=True)
        self.sampler.stopped.set()
        return drained_after, bound

    def stop(self) -> None:
        stop_functions(getattr(self, "stack", None), self.instances)
        if self.bouncer is not None:
            self.bouncer.remove()
        self.server.stop(mode="immediate")
        postgres.remove(self.server)

    def left_behind(self) -> checks.Check:
        """After stop: no function server (nor worker) this run started may still be alive."""
        servers = list(self.instances.started if self.instances else ())
        pids = [pid for server in servers for pid in server.leftovers()]
        return checks.Check("no process left behind", not pids, len(servers), [f"pid {pid}" for pid in pids])


def stop_functions(stack: Stack | None, instances: ProcessInstances | None) -> None:
    """Every process instance first: a fault may have replaced the stack's own (instances[0]),
    which the stack no longer knows. Then the stack's functions."""
    if instances is not None:
        instances.stop()
    if stack is not None:
        stack.stop()


def _inject(faults: Faults, rng: random.Random, until: float) -> None:
    time.sleep(5.0)
    while time.monotonic() < until:
        name = faults.inject_one()
        print(f"  fault: {name}", flush=True)
        time.sleep(rng.uniform(6.0, 14.0))


def _wait_for_drain(url: str, ids: list[str], deadline: float) -> float | None:
    """Seconds until every job was terminal after the faults stopped; None past the bound."""
    began = time.monotonic()
    while time.monotonic() < deadline:
        try:
            session = admin_session(url)
            try:
                left = session.run_sql(
                    "SELECT count(*) FROM jobs WHERE id = ANY(CAST(:ids AS uuid[]))"
                    " AND job_status NOT IN ('completed', 'failed', 'cancelled')",
                    ids=ids,
                )[0][0]
            finally:
                session.close()
            if left == 0:
                return round(time.monotonic() - began, 1)
        except Exception:  # noqa: BLE001 (a restart may still be settling: ask again)
            pass
        time.sleep(1.0)
    return None


def _log_dir() -> Path:
    folder = REPO / "build" / "chaos-logs"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
