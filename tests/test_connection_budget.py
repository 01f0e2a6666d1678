"""One process instance holds at most DB_POOL_SIZE pooled connections and one listening one,
whatever its traffic: many jobs at once with progress writes, cancels, failures and retries,
connections discarded after an exception in flight, and a database restart under load, as
`make scale` sends it (docs/performance.md).

The instance is a real functions-framework server (local/launcher.py). Its connections are
told apart from every other client's the way bench/scale/procfs.py does it: by the client port of
each backend in pg_stat_activity, matched to a socket that one of the instance's processes
holds open (/proc). An application_name is shared by every instance of a function, so a
count by name alone adds the instances together."""

from __future__ import annotations

import contextlib
import os
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from bench.scale.procfs import process_tree, socket_inodes
from local.launcher import start_function
from shared.core import queue
from shared.core.db import Session
from shared.core.handlers import HandlerRegistry, builtin_handlers
from shared.core.migrate import _LOCK_KEY
from tests import handlers

POOL_SIZE = 2
KINDS = ("slow_count", "fail_until", "reads_deep_json")
JOBS = 24


def _local_ports(pids: list[int], server_port: int) -> set[int]:
    """The client ports of the established connections these processes hold to the server."""
    inodes = socket_inodes(pids)
    ports = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == server_port and fields[3] == "01" and fields[9] in inodes:
            ports.add(int(fields[1].split(":")[1], 16))
    return ports


def instance_connections(session: Session, pids: list[int], server_port: int) -> Counter:
    """The instance's backends by application_name (its sockets matched to pg_stat_activity)."""
    ports = _local_ports(pids, server_port)
    rows = session.run_sql(
        "SELECT application_name, client_port FROM pg_stat_activity"
        " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
    )
    return Counter(name for name, port in rows if port in ports)


class Sampler(threading.Thread):
    """pg_stat_activity every 20 ms, on a connection of the test's own; the peak per name."""

    def __init__(self, url: str, pid: int, server_port: int):
        super().__init__(name="connection-sampler", daemon=True)
        from shared.core.db import open_session  # noqa: PLC0415

        self.session = open_session(url, application_name="test-sampler")
        self.pid, self.server_port = pid, server_port
        self.peak: Counter = Counter()
        self.peak_total = 0
        self.samples = 0
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.02):
            with contextlib.suppress(Exception):  # the restart below drops this connection too
                held = instance_connections(self.session, process_tree(self.pid), self.server_port)
                self.samples += 1
                self.peak |= held
                self.peak_total = max(self.peak_total, sum(held.values()))
                continue
            with contextlib.suppress(Exception):
                self.session.reopen()

    def stop(self) -> None:
        self._done.set()
        self.join(10)
        self.session.close()


def post(url: str, timeout: float = 60.0) -> int:
    request = urllib.request.Request(url, data=b"{}", method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def process_instance(function_env, tmp_path):
    yield from launched_process(function_env, tmp_path)


def launched_process(function_env, tmp_path, **extra: str):
    env = {
        **os.environ,
        **function_env,
        "DB_POOL_SIZE": str(POOL_SIZE),
        "DB_POOL_TIMEOUT_SECONDS": "30",
        "THREADS": str(JOBS + 8),
        "JOB_HANDLERS": ",".join(f"{kind}=tests.handlers:{kind}" for kind in KINDS),
        **extra,
    }
    with open(tmp_path / "process.log", "wb") as output:
        server = start_function("process", env, output=output)
    try:
        yield server.wait_until_serving(60)
    finally:
        server.stop()


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_one_process_instance_holds_two_pooled_connections_and_one_listening_under_scale_traffic(
    process_instance, database_url, session
):
    registry = HandlerRegistry({**builtin_handlers(), **{kind: getattr(handlers, kind) for kind in KINDS}})
    ids = []
    for number in range(JOBS):
        payload = {"tag": f"budget-{number}", "steps": 16, "stepSeconds": 0.25}
        if number % 4 == 3:  # fails once, then is retried at once (RETRY_BASE_SECONDS 0)
            job, _ = queue.enqueue(session, registry, kind="fail_until", payload={"failures": 1})
        elif number % 4 == 2:  # an exception while a statement's rows are read: that connection is discarded
            job, _ = queue.enqueue(session, registry, kind="reads_deep_json", payload=payload)
        else:
            job, _ = queue.enqueue(session, registry, kind="slow_count", payload=payload)
        ids.append(job.id)
    server_port = int(database_url.rsplit(":", 1)[1].split("/", 1)[0])
    sampler = Sampler(database_url, process_instance.pid, server_port)
    sampler.start()
    calls = [threading.Thread(target=post, args=(process_instance.url,)) for _ in range(JOBS + JOBS // 4)]
    try:
        for call in calls:
            call.start()

        def running() -> int:
            return session.run_sql("SELECT count(*) FROM jobs WHERE job_status = 'running'")[0][0]

        wait_until(lambda: running() >= JOBS // 2, 60, "the jobs to run at once")
        # Samples while they run, however slowly a loaded machine takes them (a fixed window
        # once gave 11 where the check below wants 20).
        wait_until(lambda: sampler.samples > 20, 60, "the sampler to look at the running instance")
        for job_id in ids[::5]:  # cancels while they run, as make scale sends them
            queue.cancel(session, job_id)
        # A database restart under load, as far as the instance can tell: every backend of
        # its ends at once; the pool replaces what it needs, the listener reconnects.
        session.run_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name IN ('jobqueue-process', 'jobqueue-notifier')"
        )
        for call in calls:
            call.join(120)
    finally:
        sampler.stop()
    left = session.run_sql(
        "SELECT count(*) FROM jobs WHERE job_status IN ('queued', 'running') AND id = ANY(CAST(:ids AS uuid[]))",
        ids=ids,
    )[0][0]
    assert sampler.samples > 20, "too few samples to judge"
    print(f"peak per name {dict(sampler.peak)}, total {sampler.peak_total}, {sampler.samples} samples, {left} left")
    assert sampler.peak["jobqueue-process"] <= POOL_SIZE, sampler.peak
    assert sampler.peak["jobqueue-notifier"] <= 1, sampler.peak
    assert sampler.peak_total <= POOL_SIZE + 1, sampler.peak
    assert set(sampler.peak) <= {"jobqueue-process", "jobqueue-notifier"}, sampler.peak


@pytest.fixture
def migrating_instance(function_env, tmp_path):
    yield from launched_process(function_env, tmp_path, MIGRATE_ON_START="1")


def test_migrations_on_start_take_a_pooled_connections_place_not_one_beside_them(
    migrating_instance, database_url, session
):
    """MIGRATE_ON_START: the cold start's migrations run on a direct connection of their own.
    Opened beside the first pooled connection, while other requests of the cold start open
    theirs, the instance held DB_POOL_SIZE + 1; opened before any pooled one, never more than
    DB_POOL_SIZE. The test holds the migration lock so that the migration waits while it looks."""
    server_port = int(database_url.rsplit(":", 1)[1].split("/", 1)[0])
    session.run_sql(f"SELECT pg_advisory_lock({_LOCK_KEY})")
    sampler = Sampler(database_url, migrating_instance.pid, server_port)
    sampler.start()
    answers: list[int] = []
    calls = [
        threading.Thread(target=lambda: answers.append(post(migrating_instance.url))) for _ in range(POOL_SIZE + 2)
    ]
    try:
        for call in calls:
            call.start()
        wait_until(lambda: sampler.peak["jobqueue-migrate"] == 1, 60, "the migration to wait on its lock")
        # Every call is in by now or soon: look for a while longer while the migration waits
        # (a slow machine can only make this see less, never fail a correct pool).
        seen = sampler.samples
        wait_until(lambda: sampler.samples >= seen + 25, 60, "more samples")
    finally:
        session.run_sql(f"SELECT pg_advisory_unlock({_LOCK_KEY})")
        for call in calls:
            call.join(60)
        sampler.stop()
    print(f"peak per name {dict(sampler.peak)}, total {sampler.peak_total}, {sampler.samples} samples")
    assert answers == [204] * len(calls)  # nothing due: each call claimed nothing, after the migration
    assert sampler.peak_total <= POOL_SIZE, sampler.peak


def test_a_watcher_started_after_an_idle_one_stopped_never_adds_a_second_listening_connection(
    monkeypatch, settings, session
):
    """An instance's watcher (and its LISTEN connection) stops after WATCHER_IDLE_SECONDS
    without a job; the next job starts a new one. The old listener used to close its
    connection only at the end of its current poll (up to a second), while the new one had
    already opened its own: two listening connections."""
    from shared.core import watcher as watcher_module  # noqa: PLC0415
    from shared.core.db import Pool  # noqa: PLC0415
    from shared.core.runner import Runner  # noqa: PLC0415

    monkeypatch.setattr(watcher_module, "WATCHER_IDLE_SECONDS", 0.2)
    registry = HandlerRegistry({**builtin_handlers(), **handlers.ALL})
    pool = Pool(settings, application_name="jobqueue-budget")
    runner = Runner(pool, registry, settings)

    def listeners() -> int:
        return session.run_sql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'jobqueue-notifier'"
        )[0][0]

    peak = 0
    try:
        for round_number in range(3):
            gate = f"budget-idle-{round_number}-{time.monotonic_ns()}"
            queue.enqueue(session, registry, kind="wait_for_cancel", payload={"gate": gate, "seconds": 20})
            worker = threading.Thread(target=runner.run_next)
            worker.start()
            assert handlers.STARTED.setdefault(gate, threading.Event()).wait(20)
            wait_until(lambda: runner.watcher.listening, 20, "the listening connection")
            peak = max(peak, listeners())
            handlers.GATES.setdefault(gate, threading.Event()).set()
            worker.join(20)
            wait_until(lambda watcher=runner.watcher: watcher.exited, 20, "the idle watcher to stop")
    finally:
        runner.close()
        pool.close()
    print(f"listening connections at most {peak}")
    assert peak == 1
