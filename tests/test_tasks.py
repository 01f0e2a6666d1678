"""Cloud Tasks dispatch and signed webhooks, with the real google-cloud-tasks client against
the emulator in local/tasks_emulator.py and the functions as real HTTP servers."""

import base64
import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from local import postgres
from local.stack import DEV_TOKEN, REPO, Stack
from local.tasks_emulator import TasksEmulator
from shared.core import queue
from shared.core.dispatch import Dispatcher, task_id
from shared.core.jobs import Job
from shared.core.maintenance.redispatcher import find_waiting
from shared.core.settings import Settings
from shared.core.webhooks import SIGNATURE_HEADER, sign, verify_signature
from tests.support import API_TOKEN

QUEUE = "projects/local/locations/local/queues/jobs"
INVOKER = "invoker@local.iam.gserviceaccount.com"
SECRET = "whsec-test-0123456789"
AUTH = {"Authorization": f"Bearer {DEV_TOKEN}"}  # the local stack's token
TEST_AUTH = {"Authorization": f"Bearer {API_TOKEN}"}  # make_client's


class Receiver:
    """A webhook receiver that records what arrives and whether its signature verifies."""

    def __init__(self):
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                signature = self.headers.get(SIGNATURE_HEADER, "")
                receiver.received.append(
                    {"body": body, "signature": signature, "valid": verify_signature(SECRET, signature, body)}
                )
                self.send_response(200 if receiver.received[-1]["valid"] else 400)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, count: int = 1, timeout: float = 15) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.received


@pytest.fixture
def emulator():
    running = TasksEmulator(allow_loopback=True).start()  # the functions and receivers are on loopback
    yield running
    running.stop()


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.server.shutdown()
    running.server.server_close()


def tasks_env(emulator_host: str, process_url: str) -> dict[str, str]:
    return {
        "TASKS_QUEUE": QUEUE,
        "PROCESS_URL": process_url,
        "TASKS_SERVICE_ACCOUNT": INVOKER,
        "CLOUD_TASKS_EMULATOR_HOST": emulator_host,
        "WEBHOOK_SECRET": SECRET,
        "CALLBACK_ALLOW_LOOPBACK": "1",
        "JOB_TIMEOUT_SECONDS": "600",
        "RETRY_BASE_SECONDS": "1",
        "RETRY_MAX_SECONDS": "1",
        "JOB_HANDLERS": "fail_until=tests.handlers:fail_until,noop=tests.handlers:noop",
    }


def start_stack(database_url, tmp_path, emulator_host):
    stack = Stack.on_free_ports(database_url=database_url, scheduler=False, log_dir=tmp_path)
    stack.extra_env = tasks_env(emulator_host, stack.url("process"))
    return stack.start()


@pytest.fixture
def stack(database_url, tmp_path, emulator):
    running = start_stack(database_url, tmp_path, emulator.endpoint)
    yield running
    running.stop()


def enqueue(stack, body):
    response = httpx.post(stack.url("enqueue"), json=body, headers=AUTH, timeout=30)
    assert response.status_code in (200, 202), response.text
    return response.json()


def wait_for_status(stack, job_id, wanted, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(stack.url("status"), params={"id": job_id}).json()
        if job["jobStatus"] == wanted:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} is {job['jobStatus']}, not {wanted}")


def tasks_of(emulator, job_id):
    return [
        task
        for task in emulator.tasks.values()
        if json.loads(base64.b64decode(task.http_request["body"])).get("id") == job_id
    ]


def test_enqueue_pushes_one_task_that_runs_the_job_at_its_run_at(stack, emulator):
    enqueue(stack, {"kind": "noop"})  # warm: the first push imports the Cloud Tasks client (about 1 s under load)
    run_at = datetime.now(UTC) + timedelta(seconds=2)
    job = enqueue(stack, {"kind": "noop", "runAt": run_at.isoformat()})
    assert job["dispatch"] == "sent"
    [task] = tasks_of(emulator, job["id"])
    assert task.name == f"{QUEUE}/tasks/{task_id(Job.from_row({**job_row(job), 'attempts': 0}), 'run')}"
    spec = task.http_request
    assert spec["url"] == stack.url("process") and spec["httpMethod"] in ("POST", 1)
    assert json.loads(base64.b64decode(spec["body"])) == {"id": job["id"]}
    assert spec["oidcToken"] == {"serviceAccountEmail": INVOKER, "audience": stack.url("process")}
    assert abs(task.due - run_at.timestamp()) < 0.01
    assert task.deadline == 600
    done = wait_for_status(stack, job["id"], "completed")
    assert done["attempts"] == 1
    # Not before run_at, read from the row rather than timed, which a slow machine outlasts.
    assert datetime.fromisoformat(done["processedAt"]) >= run_at
    assert task.dispatches[0].status == 200 and task.dispatches[0].headers["Authorization"].startswith("Bearer ")


def job_row(job: dict) -> dict:
    return {"id": job["id"], "attempts": job["attempts"]} | {
        name: None for name in Job.__dataclass_fields__ if name not in ("id", "attempts")
    }


def test_two_enqueues_with_one_idempotency_key_make_one_task(stack, emulator):
    body = {"kind": "noop", "idempotencyKey": "once", "runAt": (datetime.now(UTC) + timedelta(minutes=5)).isoformat()}
    first = enqueue(stack, body)
    second = enqueue(stack, body)
    assert first["id"] == second["id"] and second["dispatch"] == "sent"
    assert len(tasks_of(emulator, first["id"])) == 1


def test_a_retry_gets_a_new_task_at_the_new_run_at(stack, emulator):
    job = enqueue(stack, {"kind": "fail_until", "failures": 1, "maxAttempts": 3})
    done = wait_for_status(stack, job["id"], "completed")
    assert done["attempts"] == 2 and done["result"] == {"attempt": 2}
    first, second = sorted(tasks_of(emulator, job["id"]), key=lambda task: task.created)
    assert first.name != second.name
    retry_at = datetime.fromisoformat(done["runAt"].replace("Z", "+00:00")).timestamp()
    assert abs(second.due - retry_at) < 0.01  # the new task is scheduled at the job's new run_at
    assert retry_at - first.due >= 0.5  # which the backoff put later (RETRY_BASE_SECONDS=1, jitter down to half)


def test_a_failed_push_leaves_the_job_to_the_scheduler_path(database_url, tmp_path):
    stack = start_stack(database_url, tmp_path, f"127.0.0.1:{postgres.free_port()}")  # nothing listens there
    try:
        job = enqueue(stack, {"kind": "noop"})
        assert job["dispatch"] == "pending" and job["jobStatus"] == "queued"
        ran = httpx.post(stack.url("process"), timeout=30)  # Cloud Scheduler's tick
        assert ran.status_code == 200 and ran.json()["id"] == job["id"] and ran.json()["jobStatus"] == "completed"
    finally:
        stack.stop()


def test_the_webhook_arrives_signed_through_cloud_tasks(stack, receiver):
    job = enqueue(stack, {"kind": "noop", "callbackUrl": receiver.url})
    [delivery] = receiver.wait(1)
    assert delivery["valid"]
    body = json.loads(delivery["body"])
    assert (
        body["type"] == "job.completed" and body["job"]["id"] == job["id"] and body["job"]["jobStatus"] == "completed"
    )


LOCAL_HOOKS = {"WEBHOOK_SECRET": SECRET, "CALLBACK_ALLOW_LOOPBACK": "1"}  # receivers on loopback: development


def test_the_webhook_arrives_signed_directly_without_tasks(make_client, receiver):
    client = make_client("enqueue", **LOCAL_HOOKS)
    job = client.post("/", json={"kind": "noop", "callbackUrl": receiver.url}, headers=TEST_AUTH).get_json()
    assert "dispatch" not in job
    make_client("process", **LOCAL_HOOKS).post("/")
    [delivery] = receiver.wait(1)
    assert delivery["valid"] and json.loads(delivery["body"])["job"]["id"] == job["id"]


def test_a_cancelled_queued_job_sends_its_webhook_at_the_next_tick(make_client, receiver):
    job = (
        make_client("enqueue", **LOCAL_HOOKS)
        .post("/", json={"kind": "noop", "callbackUrl": receiver.url}, headers=TEST_AUTH)
        .get_json()
    )
    make_client("cancel", **LOCAL_HOOKS).post("/", json={"id": job["id"]}, headers=TEST_AUTH)
    assert receiver.received == []  # the cancel did not wait on the receiver: the outbox holds it
    assert make_client("sweep", **LOCAL_HOOKS).post("/").status_code == 200  # the Scheduler's tick
    [delivery] = receiver.wait(1)
    assert delivery["valid"] and json.loads(delivery["body"])["type"] == "job.cancelled"


def test_a_webhook_that_cannot_be_delivered_never_fails_the_job(make_client):
    dead = f"http://127.0.0.1:{postgres.free_port()}/hook"
    job = make_client("enqueue", **LOCAL_HOOKS).post("/", json={"kind": "noop", "callbackUrl": dead}, headers=TEST_AUTH)
    job = job.get_json()
    done = make_client("process", **LOCAL_HOOKS).post("/").get_json()
    assert done["id"] == job["id"] and done["jobStatus"] == "completed"


def test_signatures_refuse_a_tampered_body_a_stale_timestamp_and_a_wrong_secret():
    body = b'{"type":"job.completed"}'
    header = sign(SECRET, body)
    assert verify_signature(SECRET, header, body)
    assert not verify_signature(SECRET, header, body.replace(b"completed", b"failed"))
    assert not verify_signature("another-secret", header, body)
    old = sign(SECRET, body, timestamp=int(time.time()) - 3600)
    assert not verify_signature(SECRET, old, body)
    assert not verify_signature(SECRET, "garbage", body)


@pytest.mark.parametrize(
    ("url", "ok", "ok_in_development"),
    [("https://hooks.example/x", True, True), ("http://localhost:9000/x", False, True),
     ("http://127.0.0.1/x", False, True), ("http://hooks.example/x", False, False), ("ftp://x/y", False, False),
     ("javascript:alert(1)", False, False), ("https://169.254.169.254/", False, False)],
)  # fmt: skip
def test_callback_urls_must_be_https_to_public_hosts_and_loopback_is_a_development_opt_in(
    make_client, url, ok, ok_in_development
):
    for allow, expected in (("0", ok), ("1", ok_in_development)):
        client = make_client("enqueue", CALLBACK_ALLOW_LOOPBACK=allow)
        response = client.post("/", json={"kind": "noop", "callbackUrl": url}, headers=TEST_AUTH)
        assert response.status_code == (202 if expected else 400), (allow, response.get_json())
        if not expected:
            assert response.get_json()["error"]["details"][0]["field"] == "callbackUrl"


def test_sweep_pushes_one_new_task_for_a_job_whose_task_was_lost(settings, session, registry, emulator):
    job, _ = queue.enqueue(session, registry, kind="noop", payload={})
    session.run_sql("UPDATE jobs SET run_at = now() - interval '1 hour' WHERE id = CAST(:id AS uuid)", id=job.id)
    env = {
        "DATABASE_URL": "postgresql://x/y",
        **tasks_env(emulator.endpoint, "http://127.0.0.1:1/"),
        "REDISPATCH_AFTER_SECONDS": "600",
    }
    dispatcher = Dispatcher(Settings.from_env(env))
    waiting = find_waiting(session, 600)
    assert [w.id for w in waiting] == [job.id]
    assert dispatcher.redispatch_waiting(waiting) == 1
    assert dispatcher.redispatch_waiting(waiting) == 1  # same window: the same task, not a second
    assert len(tasks_of(emulator, job.id)) == 1


def test_without_tasks_queue_google_cloud_tasks_is_never_imported(function_env):
    script = (
        "import sys, functions_framework\n"
        "app = functions_framework.create_app(target='enqueue', source='functions/enqueue/main.py')\n"
        "r = app.test_client().post('/', json={'kind': 'noop'}, headers={'Authorization': 'Bearer "
        + function_env["API_TOKEN"]
        + "'})\n"
        "assert r.status_code == 202, r.get_data()\n"
        "print('google.cloud.tasks_v2' in sys.modules, 'grpc' in sys.modules)\n"
    )
    env = {key: value for key, value in function_env.items()}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False False"


def test_the_tasks_client_is_built_without_api_cores_asyncio_transport_or_aiohttp(function_env, emulator):
    """A fresh enqueue instance with Cloud Tasks on pushes its first task through the real client
    to the emulator without importing aiohttp (about a third of the client's import), which is
    installed (the Cloud SQL connector needs it) but not used."""
    script = (
        "import sys, importlib.util, functions_framework\n"
        "assert importlib.util.find_spec('aiohttp') is not None\n"
        "app = functions_framework.create_app(target='enqueue', source='functions/enqueue/main.py')\n"
        "r = app.test_client().post('/', json={'kind': 'noop'}, headers={'Authorization': 'Bearer "
        + function_env["API_TOKEN"]
        + "'})\n"
        "assert r.status_code == 202 and r.get_json()['dispatch'] == 'sent', r.get_data()\n"
        "print('google.cloud.tasks_v2' in sys.modules, 'aiohttp' in sys.modules)\n"
    )
    env = {**function_env, **tasks_env(emulator.endpoint, "http://127.0.0.1:1/")}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "True False"


def test_a_bulk_enqueue_pushes_one_task_per_queued_job_and_each_job_runs(stack, emulator):
    body = {"jobs": [{"kind": "noop", "idempotencyKey": f"bulk-{number}"} for number in range(12)] + [{"kind": "x"}]}
    response = httpx.post(stack.url("enqueue"), json=body, headers=AUTH, timeout=60)
    answers = response.json()["jobs"]
    assert [answer["status"] for answer in answers] == [202] * 12 + [400]
    assert {answer["dispatch"] for answer in answers[:12]} == {"sent"}
    for answer in answers[:12]:
        assert len(tasks_of(emulator, answer["id"])) == 1
        wait_for_status(stack, answer["id"], "completed")
    again = httpx.post(stack.url("enqueue"), json=body, headers=AUTH, timeout=60).json()["jobs"]
    assert [answer["status"] for answer in again[:12]] == [200] * 12  # a retry: the same jobs, no new task
    assert all(len(tasks_of(emulator, answer["id"])) == 1 for answer in again[:12])


def test_with_cloud_tasks_on_the_client_is_built_while_the_instance_starts(emulator):
    settings = Settings.from_env(
        {"DATABASE_URL": "postgresql://unused@127.0.0.1:1/x", **tasks_env(emulator.endpoint, "http://127.0.0.1:1/")}
    )
    dispatcher = Dispatcher(settings)
    warming = dispatcher.warm_up()
    warming.join(timeout=60)
    assert not warming.is_alive() and dispatcher._client is not None  # no dispatch asked for it
    assert dispatcher.warm_up_after_fork()
    assert not Dispatcher(Settings.from_env({"DATABASE_URL": "postgresql://unused@127.0.0.1:1/x"})).warm_up_after_fork()
