"""The local Cloud Tasks emulator holds up against what a caller can put in a task: a schedule
time far in the future or past, and targets the webhook guard refuses."""

from __future__ import annotations

import time

import httpx
import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2

from local.tasks_emulator import TasksEmulator
from shared.core import dispatch
from shared.core.dispatch import Dispatcher
from shared.core.settings import Settings
from tests import netspy
from tests.test_netguard import Recorder

QUEUE = "projects/local/locations/local/queues/jobs"


@pytest.fixture
def emulator():
    running = TasksEmulator(allow_loopback=True).start()
    yield running
    running.stop()


def create(emulator, name: str, url: str, schedule: str | None = None) -> httpx.Response:
    task = {"name": f"{QUEUE}/tasks/{name}", "httpRequest": {"url": url, "httpMethod": "POST"}}
    if schedule is not None:
        task["scheduleTime"] = schedule
    return httpx.post(f"http://{emulator.rest_endpoint}/v2/{QUEUE}/tasks", json={"task": task}, timeout=10)


def wait_done(emulator, name: str, timeout: float = 10):
    deadline = time.monotonic() + timeout
    task = emulator.tasks[f"{QUEUE}/tasks/{name}"]
    while not task.done and time.monotonic() < deadline:
        time.sleep(0.05)
    return task


def test_a_far_future_or_ancient_schedule_time_leaves_the_dispatcher_running():
    receiver = Recorder()
    emulator = TasksEmulator(allow_loopback=True).start()
    try:
        far = create(emulator, "far", receiver.url(), "9999-12-31T23:59:59-05:00")
        assert far.status_code == 400 and "720h" in far.json()["error"]["message"]
        bad = create(emulator, "bad", receiver.url(), "not a time")
        assert bad.status_code == 400
        assert create(emulator, "ancient", receiver.url(), "0001-01-01T00:00:00+05:00").status_code == 200
        assert create(emulator, "now", receiver.url()).status_code == 200
        assert wait_done(emulator, "now").dispatches[0].status == 200
        assert wait_done(emulator, "ancient").dispatches[0].status == 200  # a past time means now
        assert len(receiver.requests) == 2
    finally:
        emulator.stop()
        receiver.close()


def test_a_task_due_in_29_days_does_not_stop_one_due_now(emulator):
    receiver = Recorder()
    try:
        in_29_days = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 29 * 86400))
        assert create(emulator, "later", receiver.url(), in_29_days).status_code == 200
        time.sleep(0.2)  # let the dispatcher go to sleep on it
        assert create(emulator, "now", receiver.url()).status_code == 200
        assert wait_done(emulator, "now").dispatches[0].status == 200
    finally:
        receiver.close()


def test_the_emulator_refuses_the_metadata_server_without_connecting(emulator, monkeypatch):
    with netspy.hosts({"hooks.example.com": ["169.254.169.254"]}, monkeypatch), netspy.connects() as seen:
        assert create(emulator, "meta", "https://hooks.example.com/x").status_code == 200
        assert create(emulator, "literal", "https://169.254.169.254/computeMetadata/v1/").status_code == 200
        meta, literal = wait_done(emulator, "meta"), wait_done(emulator, "literal")
    assert meta.dispatches[0].refused and literal.dispatches[0].refused
    assert [d.status for d in meta.dispatches + literal.dispatches] == [None, None]
    assert [address for address in seen if address[0] not in ("127.0.0.1",)] == []


def test_the_emulator_follows_no_redirect(emulator):
    internal, redirector = Recorder(), None
    try:
        redirector = Recorder(302, location=internal.url("/internal-admin"))
        assert create(emulator, "redirect", redirector.url()).status_code == 200
        task = wait_done(emulator, "redirect")
        assert task.dispatches[0].status == 302 and internal.requests == []
    finally:
        internal.close()
        if redirector:
            redirector.close()


def test_over_grpc_a_task_is_delivered_and_a_bad_one_refused_as_over_rest(emulator):
    """What the dispatcher speaks: CreateTask over gRPC, through the real client it builds. The
    task's method, headers, body and OIDC token reach the target; a second create with the same
    name is ALREADY_EXISTS and a schedule time over 30 days ahead INVALID_ARGUMENT, neither kept."""
    receiver = Recorder()
    env = {
        "DATABASE_URL": "postgresql://unused@127.0.0.1:1/x",
        "TASKS_QUEUE": QUEUE,
        "PROCESS_URL": receiver.url(),
        "CLOUD_TASKS_EMULATOR_HOST": emulator.endpoint,
    }
    client = Dispatcher(Settings.from_env(env))._tasks_client()
    assert client.transport.kind == "grpc"

    def task(name: str, **extra) -> dict:
        http = {"http_method": tasks_v2.HttpMethod.POST, "url": receiver.url(), "body": b'{"id": "x"}'}
        http["headers"] = {"Content-Type": "application/json"}
        http["oidc_token"] = {"service_account_email": "invoker@p.iam.gserviceaccount.com", "audience": "aud"}
        return {"name": f"{QUEUE}/tasks/{name}", "http_request": http, **extra}

    try:
        created = client.create_task(parent=QUEUE, task=task("one"), timeout=10)
        assert created.name == f"{QUEUE}/tasks/one"
        delivered = wait_done(emulator, "one")
        assert delivered.dispatches[0].status == 200 and receiver.requests[0]["body"] == b'{"id": "x"}'
        headers = delivered.dispatches[0].headers
        assert headers["Content-Type"] == "application/json" and headers["X-CloudTasks-TaskName"] == "one"
        assert headers["Authorization"].startswith("Bearer ")
        with pytest.raises(exceptions.AlreadyExists):
            client.create_task(parent=QUEUE, task=task("one"), timeout=10)
        in_31_days = {"seconds": int(time.time()) + 31 * 86400}
        with pytest.raises(exceptions.InvalidArgument, match="720h"):
            client.create_task(parent=QUEUE, task=task("far", schedule_time=in_31_days), timeout=10)
        assert sorted(emulator.tasks) == [f"{QUEUE}/tasks/one"] and len(receiver.requests) == 1
        assert emulator.tasks[f"{QUEUE}/tasks/one"].http_request["httpMethod"] == "POST"
        in_an_hour = time.time() + 3600
        later = task("later", schedule_time={"seconds": int(in_an_hour)}, dispatch_deadline={"seconds": 120})
        client.create_task(parent=QUEUE, task=later, timeout=10)
        kept = emulator.tasks[f"{QUEUE}/tasks/later"]
        assert abs(kept.due - int(in_an_hour)) < 1 and kept.deadline == 120 and kept.dispatches == []
    finally:
        receiver.close()


def grpc_dispatcher(emulator) -> Dispatcher:
    env = {
        "DATABASE_URL": "postgresql://unused@127.0.0.1:1/x",
        "TASKS_QUEUE": QUEUE,
        "PROCESS_URL": "http://127.0.0.1:1/",
        "CLOUD_TASKS_EMULATOR_HOST": emulator.endpoint,
    }
    return Dispatcher(Settings.from_env(env))


def test_a_push_met_by_unavailable_is_tried_again_and_sent(emulator):
    """UNAVAILABLE (a connection found reset after the instance sat idle, say) is tried again;
    a push that keeps meeting it gives up within PUSH_RETRY_SECONDS and is left pending."""
    dispatcher = grpc_dispatcher(emulator)
    emulator.unavailable_creates = 2
    assert dispatcher._create_task("retried", {"url": "http://127.0.0.1:1/"}, time.time() + 3600, 60)
    assert emulator.unavailable_creates == 0 and f"{QUEUE}/tasks/retried" in emulator.tasks
    emulator.unavailable_creates = 10**6
    started = time.monotonic()
    assert not dispatcher._create_task("given-up", {"url": "http://127.0.0.1:1/"}, time.time() + 3600, 60)
    assert time.monotonic() - started < dispatch.PUSH_RETRY_SECONDS + 5
    assert f"{QUEUE}/tasks/given-up" not in emulator.tasks


def test_an_unknown_rest_route_leaves_the_open_connection_usable(emulator):
    receiver = Recorder()
    try:
        with httpx.Client(base_url=f"http://{emulator.rest_endpoint}", timeout=10) as http:
            assert http.post("/v2/nowhere", json={"task": {"name": "x" * 100}}).status_code == 404
            task = {"name": f"{QUEUE}/tasks/after", "httpRequest": {"url": receiver.url(), "httpMethod": "POST"}}
            assert http.post(f"/v2/{QUEUE}/tasks", json={"task": task}).status_code == 200
    finally:
        receiver.close()
