"""The webhook outbox: a row written with the transition that ends a job, delivered later and
apart from the request that ended it, within a time bound, at least once, by one drainer at
a time. Receivers are on loopback (CALLBACK_ALLOW_LOOPBACK=1, as in development)."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.core import maintenance, netguard, operations, outbox, queue
from shared.core.dispatch import Dispatcher
from shared.core.runner import Runner
from shared.core.settings import Settings
from shared.core.webhooks import SIGNATURE_HEADER, sign, verify_signature

SECRET = "whsec-outbox-test"


class Receiver:
    """Answers `status` to each POST and records the body's job id."""

    def __init__(self, status: int = 200):
        self.job_ids: list[str] = []
        self.status = status
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if verify_signature(SECRET, self.headers.get(SIGNATURE_HEADER, ""), body):
                    receiver.job_ids.append(json.loads(body)["job"]["id"])
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, count: int, timeout: float = 15) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(self.job_ids) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.job_ids

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Tarpit:
    """Accepts connections and never answers (the receiver from the issue)."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(128)
        self.accepted: list[socket.socket] = []
        self.lock = threading.Lock()
        self.closed = False
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                if self.closed:
                    conn.close()
                    return
                self.accepted.append(conn)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.listener.close()
            for conn in self.accepted:
                conn.close()


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.close()


@pytest.fixture
def tarpit():
    running = Tarpit()
    yield running
    running.close()


@pytest.fixture
def hook_env(env):
    return {**env, "CALLBACK_ALLOW_LOOPBACK": "1", "WEBHOOK_SECRET": SECRET}


@pytest.fixture
def dispatcher(hook_env):
    return Dispatcher(Settings.from_env(hook_env))


def pending(session) -> list[dict]:
    return [
        dict(zip(("job_id", "event_type", "attempts", "gave_up"), row))
        for row in session.run_sql(
            "SELECT job_id::text, event_type, attempts, gave_up_at IS NOT NULL FROM webhook_outbox ORDER BY id"
        )
    ]


def enqueue(session, registry, kind="noop", url="https://hooks.example.com/h", **options):
    payload = options.pop("payload", {})
    job, _ = queue.enqueue(
        session, registry, kind=kind, payload=payload, callback_url=url, check_callback=in_development, **options
    )
    return job


def in_development(url) -> str | None:
    return netguard.url_problem(url, netguard.CALLBACKS_IN_DEVELOPMENT)


# -- the row is written with the transition -----------------------------------------------


def test_each_ending_writes_one_row_in_its_transaction_and_nothing_else_does(session, pool, registry, settings):
    runner = Runner(pool, registry, settings)
    completed = enqueue(session, registry)
    runner.run_named(completed.id)
    failed = enqueue(session, registry, kind="fail_until", payload={"failures": 5}, max_attempts=2)
    runner.run_named(failed.id)  # attempt 1: requeued for a retry, not finished: no row
    assert [row["job_id"] for row in pending(session)] == [completed.id]
    session.run_sql("UPDATE jobs SET run_at = now() WHERE id = CAST(:id AS uuid)", id=failed.id)
    runner.run_named(failed.id)  # attempt 2: failed for good
    cancelled = enqueue(session, registry)
    queue.cancel(session, cancelled.id)
    stalled = enqueue(session, registry, max_attempts=1)
    queue.claim_named(session, stalled.id)
    session.run_sql(
        "UPDATE jobs SET last_heartbeat = now() - interval '1 hour' WHERE id = CAST(:id AS uuid)", id=stalled.id
    )
    maintenance.sweep(session, 60, 30)  # no attempt left: failed by sweep
    queue.enqueue(session, registry, kind="noop", payload={})  # no callback: never a row
    runner.run_next()
    assert [(row["job_id"], row["event_type"]) for row in pending(session)] == [
        (completed.id, "job.completed"),
        (failed.id, "job.failed"),
        (cancelled.id, "job.cancelled"),
        (stalled.id, "job.failed"),
    ]


def test_a_transition_rolled_back_leaves_no_row(session, registry):
    job = enqueue(session, registry)
    with pytest.raises(RuntimeError), session.transaction():
        queue.cancel(session, job.id)
        raise RuntimeError("crash before commit")
    assert pending(session) == [] and queue.get_job(session, job.id).job_status == "queued"


# -- nobody waits on a receiver -----------------------------------------------------------


def test_a_tarpit_callback_no_longer_delays_cancel(make_client, function_env, tarpit):
    auth = {"Authorization": f"Bearer {function_env['API_TOKEN']}"}
    enqueue_client = make_client("enqueue", CALLBACK_ALLOW_LOOPBACK="1")
    job = enqueue_client.post("/", json={"kind": "noop", "callbackUrl": tarpit.url}, headers=auth).get_json()
    cancel = make_client("cancel", CALLBACK_ALLOW_LOOPBACK="1")
    started = time.monotonic()
    answer = cancel.post("/", json={"id": job["id"]}, headers=auth)
    elapsed = time.monotonic() - started
    assert answer.status_code == 200 and answer.get_json()["jobStatus"] == "cancelled"
    assert tarpit.accepted == []  # the cancel never even connected to the receiver
    assert elapsed < 5  # loose: it took 16.5 s when the cancel delivered the webhook itself


def test_sweep_with_twenty_tarpit_callbacks_requeues_and_ends_within_its_bound(
    session, pool, registry, hook_env, tarpit
):
    settings = Settings.from_env({**hook_env, "WEBHOOK_DRAIN_SECONDS": "1", "WEBHOOK_TIMEOUT_SECONDS": "0.4"})
    for _ in range(20):
        queue.cancel(session, enqueue(session, registry, url=tarpit.url).id)
    stalled = enqueue(session, registry, url=None)
    queue.claim_named(session, stalled.id)
    session.run_sql(
        "UPDATE jobs SET last_heartbeat = now() - interval '1 hour' WHERE id = CAST(:id AS uuid)", id=stalled.id
    )
    started = time.monotonic()
    swept = operations.sweep_and_redispatch(pool, Dispatcher(settings), settings)
    elapsed = time.monotonic() - started
    assert swept.report.requeued == 1 and queue.get_job(session, stalled.id).job_status == "queued"
    assert elapsed < 4  # the drain's bound is 1 s; the old sweep sent 20 jobs, 3 tries, 5 s each
    rows = pending(session)
    assert len(rows) == 20 and not any(row["gave_up"] for row in rows)
    tried = [row for row in rows if row["attempts"] == 1]
    assert 1 <= len(tried) <= 4  # tried within the bound; the rest given back, due at the next tick
    due = session.run_sql("SELECT count(*) FROM webhook_outbox WHERE next_attempt_at <= now()")[0][0]
    assert due == 20 - len(tried)


def test_sweep_redispatches_with_cloud_tasks_whatever_the_receivers(session, pool, registry, hook_env, tarpit):
    from local.tasks_emulator import TasksEmulator  # noqa: PLC0415

    emulator = TasksEmulator(allow_loopback=True).start()
    try:
        env = {
            **hook_env,
            "TASKS_QUEUE": "projects/local/locations/local/queues/jobs",
            "PROCESS_URL": "http://127.0.0.1:1/",
            "CLOUD_TASKS_EMULATOR_HOST": emulator.endpoint,
            "REDISPATCH_AFTER_SECONDS": "60",
            "WEBHOOK_DRAIN_SECONDS": "5",
        }
        settings = Settings.from_env(env)
        for _ in range(20):
            queue.cancel(session, enqueue(session, registry, url=tarpit.url).id)
        waiting = enqueue(session, registry, url=None)
        session.run_sql(
            "UPDATE jobs SET run_at = now() - interval '1 hour' WHERE id = CAST(:id AS uuid)", id=waiting.id
        )
        swept = operations.sweep_and_redispatch(pool, Dispatcher(settings), settings)
        assert swept.redispatched == 1
        assert pending(session) == []  # all twenty handed to Cloud Tasks, which retries them itself
        assert sum("webhook-" in name for name in emulator.tasks) == 20
    finally:
        emulator.stop()


# -- at least once, one drainer at a time -------------------------------------------------


def test_a_crash_between_the_transition_and_the_delivery_still_delivers(session, pool, registry, dispatcher, receiver):
    job = enqueue(session, registry, url=receiver.url)
    Runner(pool, registry, dispatcher.settings).run_named(job.id)  # the invocation dies here, before draining
    assert queue.get_job(session, job.id).job_status == "completed" and receiver.job_ids == []
    operations.sweep_and_redispatch(pool, dispatcher, dispatcher.settings)  # the next tick
    assert receiver.wait(1) == [job.id] and pending(session) == []


def test_a_drainer_that_dies_mid_send_gives_its_rows_back_when_its_lease_ends(
    session, pool, registry, dispatcher, receiver
):
    job = enqueue(session, registry, url=receiver.url)
    queue.cancel(session, job.id)
    # ...and then nothing: the drainer died. A lease a loaded machine does not outlast between
    # this claim and the next drain (half a second did, once).
    [claimed] = outbox.claim(session, 5, lease_seconds=5)
    assert dispatcher.drain_webhooks(pool, 2).sent == 0  # leased: nobody else sends it meanwhile
    deadline = time.monotonic() + 20
    while not receiver.job_ids and time.monotonic() < deadline:
        dispatcher.drain_webhooks(pool, 2)
        time.sleep(0.1)
    assert receiver.job_ids == [job.id]
    with pool.session() as other:
        outbox.mark_done(other, claimed)  # the dead drainer's late word changes nothing
    assert pending(session) == []


def test_two_drainers_at_once_send_each_webhook_once(session, pool, registry, dispatcher, receiver):
    jobs = [enqueue(session, registry, url=receiver.url) for _ in range(12)]
    for job in jobs:
        queue.cancel(session, job.id)
    threads = [threading.Thread(target=dispatcher.drain_webhooks, args=(pool, 10)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(receiver.wait(12)) == sorted(job.id for job in jobs)
    assert len(receiver.job_ids) == 12 and pending(session) == []


def test_a_failing_receiver_is_retried_with_backoff_then_given_up(session, pool, registry, hook_env):
    failing = Receiver(status=500)
    try:
        settings = Settings.from_env({**hook_env, "WEBHOOK_MAX_ATTEMPTS": "2"})
        dispatcher = Dispatcher(settings)
        queue.cancel(session, enqueue(session, registry, url=failing.url).id)
        assert dispatcher.drain_webhooks(pool, 5).failed == 1
        [(attempts, wait)] = session.run_sql(
            "SELECT attempts, extract(epoch FROM next_attempt_at - now()) FROM webhook_outbox"
        )
        assert attempts == 1 and 14 < float(wait) <= 30  # not again at once: half to all of 30 s later (jitter)
        assert dispatcher.drain_webhooks(pool, 1).failed == 0  # not due yet
        session.run_sql("UPDATE webhook_outbox SET next_attempt_at = now()")
        dispatcher.drain_webhooks(pool, 5)
        assert [row["gave_up"] for row in pending(session)] == [True]
        assert dispatcher.drain_webhooks(pool, 1).failed == 0 and len(failing.job_ids) == 2
    finally:
        failing.close()


def test_process_drains_the_outbox_before_it_answers(make_client, function_env, receiver):
    env = {"CALLBACK_ALLOW_LOOPBACK": "1", "WEBHOOK_SECRET": SECRET}
    auth = {"Authorization": f"Bearer {function_env['API_TOKEN']}"}
    job = make_client("enqueue", **env).post("/", json={"kind": "noop", "callbackUrl": receiver.url}, headers=auth)
    answer = make_client("process", **env).post("/")
    assert answer.get_json()["jobStatus"] == "completed"
    assert receiver.job_ids == [job.get_json()["id"]]  # already there when process answered


# -- signatures ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    ["t=²,v1=" + "0" * 64, "t=١٢٣,v1=" + "0" * 64, "t=1,v1=é", "t=99999999999999999999999,v1=00", "", "t=,v1=", "=,=,"],
)
def test_verify_signature_is_false_for_any_malformed_header(header):
    assert verify_signature(SECRET, header, b"{}") is False


def test_verify_signature_still_accepts_a_good_one():
    assert verify_signature(SECRET, sign(SECRET, b"{}"), b"{}")


def test_with_cloud_tasks_a_name_resolving_inside_is_refused_before_the_push(
    session, pool, registry, hook_env, monkeypatch
):
    from local.tasks_emulator import TasksEmulator  # noqa: PLC0415
    from tests import netspy  # noqa: PLC0415

    emulator = TasksEmulator().start()
    try:
        env = {
            **{key: value for key, value in hook_env.items() if key != "CALLBACK_ALLOW_LOOPBACK"},
            "TASKS_QUEUE": "projects/local/locations/local/queues/jobs",
            "PROCESS_URL": "http://127.0.0.1:1/",
            "CLOUD_TASKS_EMULATOR_HOST": emulator.endpoint,
        }
        dispatcher = Dispatcher(Settings.from_env(env))
        job = enqueue(session, registry, url="https://hooks.example.com/h")
        queue.cancel(session, job.id)
        with netspy.hosts({"hooks.example.com": ["169.254.169.254"]}, monkeypatch):
            drained = dispatcher.drain_webhooks(pool, 5)
        assert drained.failed == 1 and emulator.tasks == {}
        [(error,)] = session.run_sql("SELECT last_error FROM webhook_outbox")
        assert error.startswith("refused") and "169.254" not in error
    finally:
        emulator.stop()


def test_a_callback_to_our_own_process_function_is_refused_at_enqueue(make_client, function_env):
    process_url = "http://127.0.0.1:8082/"
    client = make_client(
        "enqueue", CALLBACK_ALLOW_LOOPBACK="1", TASKS_QUEUE="projects/p/locations/l/queues/q", PROCESS_URL=process_url
    )
    answer = client.post(
        "/",
        json={"kind": "noop", "callbackUrl": process_url},
        headers={"Authorization": f"Bearer {function_env['API_TOKEN']}"},
    )
    assert answer.status_code == 400
    assert answer.get_json()["error"]["details"] == [
        {"field": "callbackUrl", "message": "must not be one of this service's own functions"}
    ]


def test_a_drain_that_cannot_reach_the_database_never_fails_the_invocation(dispatcher):
    from shared.core.db import Pool  # noqa: PLC0415
    from tests.test_netguard import free_port  # noqa: PLC0415

    nowhere = Pool(Settings.from_env({"DATABASE_URL": f"postgresql://postgres@127.0.0.1:{free_port()}/jobs"}))
    assert operations.drain_webhooks(nowhere, dispatcher) == outbox.Drained()  # logged, not raised
