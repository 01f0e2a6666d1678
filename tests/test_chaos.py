"""Slow reliability runs (make chaos): a database restart under load, and overload.

Figures these print are the ones in the README's reliability section.
"""

import json
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from client.api import JobQueueClient
from local import postgres
from local.stack import DEV_TOKEN, Stack
from shared.core.db import open_session
from shared.core.migrate import apply_migrations

pytestmark = pytest.mark.slow
AUTH = {"Authorization": f"Bearer {DEV_TOKEN}"}
REPORT = Path(__file__).resolve().parent.parent / "build" / "chaos.json"
HANDLERS = "slow_count=tests.handlers:slow_count,noop=tests.handlers:noop"


def record(name: str, figures: dict) -> None:
    REPORT.parent.mkdir(exist_ok=True)
    existing = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    existing[name] = figures
    REPORT.write_text(json.dumps(existing, indent=2))
    print(f"\n{name}: {json.dumps(figures)}")


@pytest.fixture
def own_server():
    """A server of this test's own, which it may crash and restart."""
    server = postgres.throwaway_server()
    session = open_session(server.url, timeout=30)
    apply_migrations(session)
    session.close()
    yield server
    server.stop(mode="immediate")
    postgres.remove(server)


def start_stack(database_url, tmp_path, **extra):
    env = {
        "JOB_HANDLERS": HANDLERS,
        "HEARTBEAT_SECONDS": "1",
        "STALLED_AFTER_SECONDS": "20",
        "DB_TIMEOUT_SECONDS": "3",
        **extra,
    }
    return Stack.on_free_ports(database_url=database_url, extra_env=env, scheduler=False, log_dir=tmp_path).start()


def connections_by_function(url: str) -> dict[str, int]:
    session = open_session(url)
    try:
        rows = session.run_sql(
            "SELECT application_name, count(*) FROM pg_stat_activity WHERE application_name LIKE 'jobqueue-%' GROUP BY 1"
        )
        return {name: count for name, count in rows}
    finally:
        session.close()


def rss_mb(pid: int) -> float:
    """Resident memory of a server and its workers (gunicorn forks one)."""
    total = 0
    for candidate in [pid, *_children(pid)]:
        for line in Path(f"/proc/{candidate}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry))
    return found


def test_a_database_restart_loses_no_job_and_runs_none_twice(own_server, tmp_path):
    stack = start_stack(own_server.url, tmp_path)
    client = JobQueueClient(
        stack.url("enqueue"), stack.url("status"), stack.url("cancel"), stack.url("process"), token=DEV_TOKEN
    )
    statuses: Counter = Counter()
    try:
        tags = [f"restart-{i}" for i in range(6)]
        jobs = [client.enqueue({"kind": "slow_count", "tag": tag, "steps": 30, "stepSeconds": 0.2}) for tag in tags]
        runners = [
            threading.Thread(target=lambda j=j: _post(stack.url("process"), {"id": j["id"]}), daemon=True)
            for j in jobs[:4]
        ]
        for runner in runners:
            runner.start()
        streams = {}

        def follow(job_id):
            streams[job_id] = [(e.event, e.id) for e in client.follow(job_id)]

        followers = [threading.Thread(target=follow, args=(j["id"],), daemon=True) for j in jobs[:3]]
        for follower in followers:
            follower.start()
        time.sleep(1.5)

        own_server.kill()  # the database goes away mid-job, streams open
        call_while_down(stack, jobs[0]["id"], statuses, seconds=4)
        own_server.start()
        back_at = time.monotonic()

        deadline = time.monotonic() + 30
        while httpx.post(stack.url("enqueue"), json={"kind": "noop"}, headers=AUTH, timeout=10).status_code != 202:
            assert time.monotonic() < deadline, "the functions did not reconnect by themselves"
            time.sleep(0.5)
        reconnected_after = time.monotonic() - back_at

        for runner in runners:
            runner.join(60)
        # Whatever did not finish is recovered: sweep (after the stall threshold) and process.
        deadline = time.monotonic() + 90
        while True:
            states = [client.status(j["id"])["jobStatus"] for j in jobs]
            if all(s == "completed" for s in states):
                break
            assert time.monotonic() < deadline, f"jobs left behind: {states}"
            httpx.post(stack.url("sweep"), timeout=30)
            _post(stack.url("process"), {})
            time.sleep(1)
        for follower in followers:
            follower.join(60)
    finally:
        stack.stop()

    completed_events = []
    for job in jobs:
        events = list(client_for_events(own_server.url, job["id"]))
        completed_events.append(sum(1 for kind, status in events if kind == "status" and status == "completed"))
    lost = sum(1 for count in completed_events if count == 0)
    twice = sum(1 for count in completed_events if count > 1)
    for job_id, seen in streams.items():
        ids = [int(i) for kind, i in seen if kind not in ("snapshot", "done") and i]
        assert ids == list(range(1, len(ids) + 1)), f"stream of {job_id} lost or repeated events"
        assert seen[-1][0] == "done"
    bad_5xx = sum(count for code, count in statuses.items() if code >= 500 and code != 503)
    record(
        "database_restart",
        {
            "jobs": len(jobs),
            "lost": lost,
            "completed_twice": twice,
            "answers_while_down": dict(statuses),
            "non_503_5xx": bad_5xx,
            "seconds_down": 4,
            "first_202_after_restart_s": round(reconnected_after, 2),
        },
    )
    assert lost == 0 and twice == 0 and bad_5xx == 0


def call_while_down(stack, job_id, statuses: Counter, seconds: float) -> None:
    """Call enqueue, status and sweep for `seconds`; each must answer, and quickly."""
    down_started = time.monotonic()
    while time.monotonic() - down_started < seconds:
        for call in (
            lambda: httpx.post(stack.url("enqueue"), json={"kind": "noop"}, headers=AUTH, timeout=10),
            lambda: httpx.get(stack.url("status"), params={"id": job_id}, timeout=10),
            lambda: httpx.post(stack.url("sweep"), timeout=10),
        ):
            started = time.monotonic()
            answer = call()
            statuses[answer.status_code] += 1
            assert time.monotonic() - started < 8, "a function hung while the database was down"
            if answer.status_code == 503:
                assert answer.headers["Retry-After"]
        time.sleep(0.2)


def client_for_events(url, job_id):
    session = open_session(url)
    try:
        rows = session.run_sql(
            "SELECT kind, data->>'jobStatus' FROM job_events WHERE job_id = CAST(:id AS uuid) ORDER BY seq", id=job_id
        )
        yield from ((kind, status) for kind, status in rows)
    finally:
        session.close()


def _post(url, body):
    try:
        return httpx.post(url, json=body, timeout=120).status_code
    except httpx.HTTPError:
        return None


class ConnectionSampler(threading.Thread):
    """Samples the database connections each function holds, keeping the peak."""

    def __init__(self, database_url: str):
        super().__init__(daemon=True)
        self.database_url = database_url
        self.peak: Counter = Counter()
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            for name, count in connections_by_function(self.database_url).items():
                self.peak[name] = max(self.peak[name], count)
            time.sleep(0.05)


def enqueue_burst(stack, count: int, clients: int) -> dict:
    local, opened = threading.local(), []

    def enqueue(i):
        # A client per thread: a new httpx client builds an SSL context (about 30 ms).
        if not hasattr(local, "http"):
            local.http = httpx.Client(timeout=60)
            opened.append(local.http)
        return local.http.post(stack.url("enqueue"), json={"kind": "noop", "n": i}, headers=AUTH).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(clients) as pool:
        codes = Counter(pool.map(enqueue, range(count)))
    for http in opened:
        http.close()
    assert set(codes) <= {202, 429, 503}
    return {"answers": dict(codes), "seconds": round(time.monotonic() - started, 1)}


def process_burst(stack, count: int) -> dict:
    for i in range(count):
        body = {"kind": "slow_count", "tag": f"over-{i}", "steps": 5, "stepSeconds": 0.3}
        httpx.post(stack.url("enqueue"), json=body, headers=AUTH)
    with ThreadPoolExecutor(count) as pool:
        codes = Counter(pool.map(lambda _: _post(stack.url("process"), {}), range(count)))
    assert set(codes) <= {200, 204, 503}
    return dict(codes)


def open_streams(stack, count: int) -> dict:
    job = httpx.post(stack.url("enqueue"), json={"kind": "noop"}, headers=AUTH).json()
    rss_before = rss_mb(stack.processes["status"].pid)
    opened, refused = [], 0
    for _ in range(count):
        http = httpx.Client(timeout=30)
        request = http.build_request("GET", stack.url("status"), params={"id": job["id"], "stream": "1"})
        response = http.send(request, stream=True)
        if response.status_code == 200:
            opened.append((http, response))
            continue
        assert response.status_code in (429, 503), response.status_code
        refused += 1
        response.close()
        http.close()
    time.sleep(1)
    plain = httpx.get(stack.url("status"), params={"id": job["id"]}, timeout=30)
    figures = {
        "opened": len(opened),
        "refused_429": refused,
        "plain_request_meanwhile": plain.status_code,
        "status_rss_mb_before": round(rss_before, 1),
        "status_rss_mb_with_streams": round(rss_mb(stack.processes["status"].pid), 1),
    }
    for http, response in opened:
        response.close()
        http.close()
    assert plain.status_code == 200
    return figures


def test_overload_is_served_or_refused_cleanly_with_bounded_connections(database_url, tmp_path):
    pool_size = 4
    settings = {
        "DB_POOL_SIZE": str(pool_size),
        "DB_POOL_TIMEOUT_SECONDS": "2",
        "THREADS": "220",
        "MAX_OPEN_STREAMS": "150",
    }
    stack = start_stack(database_url, tmp_path, **settings)
    sampler = ConnectionSampler(database_url)
    sampler.start()
    try:
        figures = {
            "db_pool_size": pool_size,
            "enqueue_burst": enqueue_burst(stack, 1000, clients=16),
            "process_16_at_once": process_burst(stack, 16),
            "streams_200": open_streams(stack, 200),
        }
    finally:
        sampler.stopped.set()
        sampler.join()
        stack.stop()
    figures["peak_connections"] = dict(sampler.peak)
    record("overload", figures)
    for name, count in sampler.peak.items():
        assert count <= pool_size + (1 if name == "jobqueue-listener" else 0), (name, count)
