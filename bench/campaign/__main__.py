"""make chaos: the fault campaign. Seeded and bounded; prints its seed and its verdict, writes
build/chaos.json, and exits 3 when any check fails (1 is a crash).

    python -m bench.campaign                     # a random seed, printed
    SEED=1234 python -m bench.campaign           # that run again
    python -m bench.campaign --plant claim-ignores-status   # with a bug planted: exits 0 only if caught

The campaign plays Cloud Tasks (one delivery per job at its run-at, some twice at once and
some again long after) and Cloud Scheduler (process and sweep ticks) against the local
stack, while it injects faults; then it stops the faults, waits for the queue to drain, and
judges what happened from the job rows, the ledger and what it saw over HTTP.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from bench import ledger
from bench.campaign import checks, workload
from bench.campaign.faults import Faults, ProcessInstances, admin_session
from bench.campaign.observe import Answers, ConnectionSampler, StreamFollower
from local import postgres, reaper
from local.functions import NO_RATE_LIMITS
from local.pgbouncer import start_pgbouncer
from local.stack import DEV_TOKEN, REPO, Stack
from shared.core.migrate import apply_migrations

REPORT = REPO / "build" / "chaos.json"
AUTH = {"Authorization": f"Bearer {DEV_TOKEN}"}
STALLED_AFTER = 5.0
RETRY_MAX = 4.0
POOL_SIZE = 4
PROCESS_INSTANCES = 2
DELIVERY_WORKERS = 40  # the emulated queue's max_concurrent_dispatches
EXTRA_DELIVERY_WORKERS = 8
POOLER_POOL_SIZE = 20  # the pooler's server connections to PostgreSQL
FOLLOWED_STREAMS = 20

# A bug the campaign must catch, planted in a copy of the tree (never in this one).
PLANTS = {
    # A claim that takes a job whatever its status: a duplicate or late delivery runs it again.
    "claim-ignores-status": (
        "shared/core/sql/claim_named_job.sql",
        "AND job_status = 'queued' AND run_at <= now()",
        "AND run_at <= now()",
    ),
    # A completion without its lease: a zombie (a frozen instance's run, swept and claimed
    # again elsewhere) may complete the job over the newer attempt. Caught only when such a
    # zombie reaches its completion before it notices the lost lease, which is a race.
    "unfenced-complete": (
        "shared/core/sql/complete_job.sql",
        "AND worker_token = CAST(:token AS uuid)",
        "AND CAST(:token AS uuid) IS NOT NULL",
    ),
}


class Deliveries:
    """The extra deliveries of a task that Cloud Tasks may make (at-least-once): each POSTs
    {"id"} to a process instance, on a bounded pool; an unreachable instance or a 503 is
    retried a second later, as Cloud Tasks would."""

    def __init__(self, instances, answers: Answers):
        self.instances, self.answers = instances, answers
        self._due: list[tuple[float, int, str]] = []
        self._count = 0
        self._lock = threading.Condition()
        self._pool = ThreadPoolExecutor(EXTRA_DELIVERY_WORKERS, thread_name_prefix="delivery")
        self._slots = threading.Semaphore(EXTRA_DELIVERY_WORKERS)
        self.stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deliveries", daemon=True)

    def start(self) -> Deliveries:
        self._thread.start()
        return self

    def add(self, job_id: str, at: float) -> None:
        with self._lock:
            self._count += 1
            heapq.heappush(self._due, (at, self._count, job_id))
            self._lock.notify()

    def _run(self) -> None:
        while not self.stopped.is_set():
            with self._lock:
                if not self._due or self._due[0][0] > time.monotonic():
                    self._lock.wait(0.1)
                    continue
                _, _, job_id = heapq.heappop(self._due)
            self._slots.acquire()
            self._pool.submit(self._deliver, job_id)

    def _deliver(self, job_id: str) -> None:
        try:
            response = httpx.post(self.instances.url(), json={"id": job_id}, timeout=600)
            self.answers.record("process(task)", response)
            if response.status_code >= 500 or response.status_code == 429:
                self.add(job_id, time.monotonic() + 1.0)
        except httpx.HTTPError:
            self.answers.unreachable("process(task)")
            self.add(job_id, time.monotonic() + 1.0)
        finally:
            self._slots.release()

    def stop(self) -> None:
        self.stopped.set()
        self._pool.shutdown(wait=False, cancel_futures=True)


class Ticks(threading.Thread):
    """Cloud Scheduler's part: process (a few in flight) every second, sweep every two."""

    def __init__(self, stack: Stack, instances, answers: Answers):
        super().__init__(name="ticks", daemon=True)
        self.stack, self.instances, self.answers = stack, instances, answers
        self.slots = threading.Semaphore(4)
        self.stopped = threading.Event()

    def _call(self, name: str, release: bool) -> None:
        try:
            url = self.instances.url() if name == "process" else self.stack.url(name)
            self.answers.record(f"{name}(tick)", httpx.post(url, timeout=600))
        except httpx.HTTPError:
            self.answers.unreachable(f"{name}(tick)")
        finally:
            if release:
                self.slots.release()

    def run(self) -> None:
        tick = 0
        while not self.stopped.wait(1.0):
            tick += 1
            if self.slots.acquire(blocking=False):
                threading.Thread(target=self._call, args=("process", True), daemon=True).start()
            if tick % 2 == 0:
                threading.Thread(target=self._call, args=("sweep", False), daemon=True).start()


def enqueue(stack: Stack, job: workload.PlannedJob, answers: Answers) -> None:
    body = dict(job.body)
    if "runAt" in body:
        body["runAt"] = (datetime.now(UTC) + timedelta(seconds=body["runAt"])).isoformat()
    while True:  # the database may be down: a client retries a 503, as Retry-After says
        try:
            response = answers.record("enqueue", httpx.post(stack.url("enqueue"), json=body, headers=AUTH, timeout=30))
        except httpx.HTTPError:
            answers.unreachable("enqueue")
            time.sleep(0.5)
            continue
        if response.status_code == 202:
            break
        if response.status_code != 503:
            raise RuntimeError(f"enqueue refused a planned job: {response.status_code} {response.text[:300]}")
        time.sleep(float(response.headers.get("Retry-After", "1")))
    created = response.json()
    job.job_id, job.enqueued_at = created["id"], time.monotonic()
    job.extra["runAt"] = created["runAt"]


def cancel(stack: Stack, job: workload.PlannedJob, answers: Answers) -> None:
    for _ in range(20):
        try:
            response = answers.record(
                "cancel", httpx.post(stack.url("cancel"), json={"id": job.job_id}, headers=AUTH, timeout=30)
            )
        except httpx.HTTPError:
            answers.unreachable("cancel")
            time.sleep(0.5)
            continue
        if response.status_code != 503:
            job.extra["cancel"] = response.json().get("outcome", response.status_code)
            return
        time.sleep(1.0)


def due_in(job: workload.PlannedJob) -> float:
    run_at = datetime.fromisoformat(job.extra["runAt"].replace("Z", "+00:00"))
    return max(0.0, (run_at - datetime.now(UTC)).total_seconds())


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
        thread = threading.Thread(target=follower.follow, args=(self.fault_until + 120,), daemon=True)
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


def run_campaign(seed: int, count: int, fault_seconds: float, only: tuple[str, ...] = (), pooler: bool = True) -> dict:
    campaign = Campaign(seed, count, fault_seconds, only, pooler)
    try:
        campaign.start()
        campaign.drive()
        drained_after, bound = campaign.drain()
        report = _judge(campaign, drained_after, bound)
    finally:
        campaign.stop()
    left_behind = campaign.left_behind()
    report["checks"][left_behind.name] = left_behind.to_json()
    report["passed"] = report["passed"] and left_behind.ok
    return report


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


def _judge(campaign: Campaign, drained_after: float | None, bound: float) -> dict:
    planned, answers, sampler, followers = campaign.planned, campaign.answers, campaign.sampler, campaign.followers
    ids = [job.job_id for job in planned]
    session = admin_session(campaign.url, timeout=60)
    try:
        jobs = checks.read_jobs(session, ids)
        runs = checks.read_ledger(session)
        statuses = checks.read_status_events(session, ids)
    finally:
        session.close()
    completion_check, exceptions = checks.completions(jobs, runs)
    budget = connection_budget(campaign)
    verdict = [
        checks.all_terminal(jobs, len(ids)),
        checks.completed_by_its_last_attempt(jobs, runs),
        checks.runs_within_attempts(jobs, runs),
        completion_check,
        checks.terminal_is_final(statuses),
        checks.cancelled_stay_cancelled(jobs, statuses),
        checks.streams_in_order(followers),
        checks.no_server_errors(answers),
        checks.no_unhandled_errors(_log_lines(campaign.log_dir)),
        checks.connections_within_budget(sampler.peaks(), budget),
    ]
    if drained_after is None:
        verdict.append(
            checks.Check(f"drained within {bound:.0f} s of the last fault", False, len(ids), ["not drained"])
        )
    by_status: dict[str, int] = {}
    for job in jobs.values():
        by_status[job["status"]] = by_status.get(job["status"], 0) + 1
    return {
        "seed": campaign.seed,
        "jobs": len(ids),
        "kinds": {kind: sum(1 for j in planned if j.kind == kind) for kind in workload.MIX},
        "byStatus": by_status,
        "seconds": round(time.monotonic() - campaign.started, 1),
        "faults": _count(f["fault"] for f in campaign.faults.log),
        "duplicateDeliveries": sum(1 for j in planned if j.duplicate),
        "lateDeliveries": sum(1 for j in planned if j.late_copy),
        "handlerRuns": sum(1 for rows in runs.values() for r in rows if r["event"] == "started"),
        "finishedRunsNotRecorded": exceptions,
        "drainedSecondsAfterFaults": drained_after,
        "drainBoundSeconds": bound,
        "streams": {"followed": len(followers), "reconnects": sum(f.reconnects for f in followers)},
        "answers": dict(sorted(answers.by_call.items())),
        "peakConnections": sampler.peaks(),
        "through": "PgBouncer (transaction mode)" if campaign.bouncer is not None else "direct",
        "connectionBudget": budget,
        "checks": {check.name: check.to_json() for check in verdict},
        "passed": all(check.ok for check in verdict),
    }


def connection_budget(campaign: Campaign) -> dict[str, int]:
    """What may be connected to PostgreSQL at once. Direct: each function's pool per instance,
    and one LISTEN connection per listening instance (status's for streams, each process
    instance's for cancels). Through the pooler, the functions' pools are the pooler's
    server connections; the LISTEN connections still go direct."""
    listeners = {"jobqueue-notifier": 1 + PROCESS_INSTANCES}  # one per status and per process instance
    if campaign.bouncer is not None:
        return {"pooler": POOLER_POOL_SIZE, **listeners}
    pools = {f"jobqueue-{name}": POOL_SIZE for name in stack_names()}
    return {**pools, "jobqueue-process": POOL_SIZE * PROCESS_INSTANCES, **listeners}


def stack_names() -> tuple[str, ...]:
    from local.functions import FUNCTIONS  # noqa: PLC0415

    return FUNCTIONS


def _count(items) -> dict[str, int]:
    counted: dict[str, int] = {}
    for item in items:
        counted[item] = counted.get(item, 0) + 1
    return counted


def _log_lines(folder: Path) -> list[str]:
    return [line for path in sorted(folder.glob("*.log")) for line in path.read_text(errors="replace").splitlines()]


def _log_dir() -> Path:
    folder = REPO / "build" / "chaos-logs"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


CHECKS_FAILED = 3  # distinct from a crash (1), so a planted run can tell "caught" from "broke"


def planted_run(plant: str, argv: list[str]) -> int:
    """The campaign from a copy of the tree with one bug planted: 0 when its checks caught
    the bug (the campaign can fail), 1 when they passed it, or the run broke."""
    path, fenced, unfenced = PLANTS[plant]
    with tempfile.TemporaryDirectory(prefix="jobqueue-planted-") as folder:
        copy = Path(folder) / "tree"
        shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".git", ".venv*", "build", ".local", "node_modules"))
        target = copy / path
        text = target.read_text()
        if fenced not in text:
            raise SystemExit(f"cannot plant {plant}: {path} no longer holds {fenced!r}")
        target.write_text(text.replace(fenced, unfenced))
        os.chmod(copy, 0o755)
        print(f"planted {plant} in a copy of the tree: {path}", flush=True)
        command = [sys.executable, "-m", "bench.campaign", *argv]
        command += ["--report", str(REPORT.with_name(f"chaos-{plant}.json"))]
        returncode = reaper.run_tied(command, cwd=copy, env={**os.environ, "PYTHONPATH": str(copy)})
    if returncode == CHECKS_FAILED:
        print(f"the planted bug ({plant}) was caught: the campaign can fail")
        return 0
    print(f"the planted bug ({plant}) was NOT caught (exit {returncode})", file=sys.stderr)
    return 1


def stop_on_sigterm() -> None:
    """SIGTERM ends the campaign through its cleanup (Python's default would skip it)."""

    def stop(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str]) -> int:
    stop_on_sigterm()
    parser = argparse.ArgumentParser(prog="python -m bench.campaign", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SEED") or random.randrange(1, 10**6)))
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("JOBS", "2000")))
    parser.add_argument("--fault-seconds", type=float, default=float(os.environ.get("FAULT_SECONDS", "180")))
    parser.add_argument("--plant", choices=sorted(PLANTS))
    parser.add_argument("--report", type=Path, default=REPORT)
    parser.add_argument("--faults", default=os.environ.get("FAULTS", ""), help="only these faults, comma-separated")
    parser.add_argument("--direct", action="store_true", help="no PgBouncer between the functions and PostgreSQL")
    args = parser.parse_args(argv)
    if args.plant:
        rest = ["--seed", str(args.seed), "--jobs", str(args.jobs), "--fault-seconds", str(args.fault_seconds)]
        rest += ["--faults", args.faults, *(["--direct"] if args.direct else [])]
        return planted_run(args.plant, rest)
    print(f"fault campaign: seed {args.seed} (rerun with SEED={args.seed}), {args.jobs} jobs", flush=True)
    only = tuple(filter(None, args.faults.split(",")))
    report = run_campaign(args.seed, args.jobs, args.fault_seconds, only, pooler=not args.direct)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2, default=str))
    for name, check in report["checks"].items():
        mark = "ok  " if check["ok"] else "FAIL"
        print(f"  {mark} {name} ({check['lookedAt']} looked at)")
        for problem in check["problems"][:5]:
            print(f"         {problem}")
    print(f"{'PASSED' if report['passed'] else 'FAILED'}: seed {args.seed}; figures in {args.report}")
    return 0 if report["passed"] else CHECKS_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
