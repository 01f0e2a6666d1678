"""Traces: one trace from enqueue through the Cloud Task to process and the job's statements
(over real HTTP, with the Cloud Tasks emulator and TRACING=console), the Scheduler path and
retries joining the job's trace, the traceparent stored and passed on with tracing off, and
nothing of OpenTelemetry imported without TRACING."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from local.stack import DEV_TOKEN, Stack
from local.tasks_emulator import TasksEmulator
from shared.core import tracing
from shared.core.errors import SettingsError
from shared.core.settings import Settings

REPO = Path(__file__).resolve().parent.parent
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"
TOKEN = "tracing-test-token"


def stored_traceparent(session, job_id: str) -> str | None:
    return session.run_sql("SELECT traceparent FROM jobs WHERE id = :id", id=job_id)[0][0]


# -- off -------------------------------------------------------------------------------------

IMPORT_CHECK = """
import sys, functions_framework
apps = {name: functions_framework.create_app(target=name, source=f'functions/{name}/main.py').test_client()
        for name in ('enqueue', 'process', 'status', 'sweep')}
headers = {'Authorization': 'Bearer %s', 'traceparent': '%s'}
job = apps['enqueue'].post('/', json={'kind': 'noop'}, headers=headers)
assert job.status_code == 202, job.get_data()
assert apps['process'].post('/', json={'id': job.get_json()['id']}).get_json()['outcome'] == 'completed'
assert apps['status'].get('/?id=' + job.get_json()['id']).status_code == 200
assert apps['sweep'].post('/').status_code == 200
print(job.get_json()['id'], any(name.startswith('opentelemetry') for name in sys.modules))
"""


def run_import_check(function_env: dict, **extra: str) -> tuple[str, bool]:
    env = {"PATH": "/usr/bin:/bin", **function_env, "API_TOKEN": TOKEN, **extra}
    script = IMPORT_CHECK % (TOKEN, CALLER)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    job_id, imported = done.stdout.strip().splitlines()[-1].split()
    return job_id, imported == "True"


def test_without_tracing_nothing_of_opentelemetry_is_imported(function_env, session):
    job_id, imported = run_import_check(function_env)
    assert not imported
    assert stored_traceparent(session, job_id) == CALLER  # still stored, for Cloud Run's own traces
    # and the check sees an import when there is one
    assert run_import_check(function_env, TRACING="console")[1]


@pytest.fixture
def off(make_client):
    tracing.reset()
    yield make_client("enqueue", API_TOKEN=TOKEN)
    tracing.reset()


@pytest.mark.parametrize(
    "header",
    [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero span id
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # a version this code does not know
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # a digit short
        "not a traceparent",
    ],
)
def test_an_invalid_traceparent_is_ignored(off, session, header):
    answer = off.post("/", json={"kind": "noop"}, headers={"Authorization": f"Bearer {TOKEN}", "traceparent": header})
    assert answer.status_code == 202
    assert stored_traceparent(session, answer.get_json()["id"]) is None


def test_a_repeated_idempotency_key_keeps_the_first_trace(off, session):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    first = off.post("/", json={"kind": "noop", "idempotencyKey": "k"}, headers={**auth, "traceparent": CALLER})
    other = CALLER.replace("00f067aa0ba902b7", "1111111111111111")
    again = off.post("/", json={"kind": "noop", "idempotencyKey": "k"}, headers={**auth, "traceparent": other})
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    assert stored_traceparent(session, first.get_json()["id"]) == CALLER


def test_tracing_must_be_a_known_mode():
    with pytest.raises(SettingsError, match="TRACING must be cloud-trace or console"):
        Settings.from_env({"DATABASE_URL": "postgresql://localhost/jobs", "TRACING": "jaeger"})


# -- on, over real HTTP ----------------------------------------------------------------------


def spans_in(path: Path) -> list[dict]:
    spans = []
    for line in path.read_text().splitlines():
        if line.startswith("{") and '"context"' in line:
            spans.append(json.loads(line))
    return spans


def trace_of(span: dict) -> str:
    return span["context"]["trace_id"].removeprefix("0x")


def span_id(span: dict) -> str:
    return span["context"]["span_id"].removeprefix("0x")


def test_one_trace_from_enqueue_through_the_cloud_task_to_process_and_its_statements(database_url, tmp_path, session):
    emulator = TasksEmulator(allow_loopback=True).start()  # the functions are on loopback
    stack = Stack.on_free_ports(database_url=database_url, scheduler=False, log_dir=tmp_path)
    stack.extra_env = {
        "TASKS_QUEUE": "projects/local/locations/local/queues/jobs",
        "PROCESS_URL": stack.url("process"),
        "CLOUD_TASKS_EMULATOR_HOST": emulator.endpoint,
        "JOB_HANDLERS": "noop=tests.handlers:noop",
        "TRACING": "console",
    }
    try:
        stack.start()
        auth = {"Authorization": f"Bearer {DEV_TOKEN}", "traceparent": CALLER}
        job = httpx.post(stack.url("enqueue"), json={"kind": "noop"}, headers=auth, timeout=30).json()
        assert job["dispatch"] == "sent"
        deadline = time.monotonic() + 30
        while httpx.get(stack.url("status"), params={"id": job["id"]}).json()["jobStatus"] != "completed":
            assert time.monotonic() < deadline, "the task did not run the job"
            time.sleep(0.1)
        [task] = emulator.tasks.values()  # the one job's one task
    finally:
        stack.stop()
        emulator.stop()
    stored = stored_traceparent(session, job["id"])
    assert stored.split("-")[1] == CALLER_TRACE  # the caller's trace, continued
    assert task.http_request["headers"]["traceparent"] == stored  # carried in the task's headers
    spans = spans_in(tmp_path / "enqueue.log") + spans_in(tmp_path / "process.log")
    assert {trace_of(span) for span in spans} == {CALLER_TRACE}
    by_name = {span["name"]: span for span in spans}
    assert {
        "enqueue",
        "jobqueue.enqueue",
        "enqueue_job",
        "record_traceparent",
        "cloudtasks.create_task",
        "process",
        "claim_named_job",
        "jobqueue.run",
        "complete_job",
    } <= set(by_name)
    assert by_name["enqueue"]["parent_id"].removeprefix("0x") == CALLER.split("-")[2]
    assert span_id(by_name["jobqueue.enqueue"]) == stored.split("-")[2]
    assert by_name["process"]["parent_id"].removeprefix("0x") == stored.split("-")[2]  # the task's header
    run = by_name["jobqueue.run"]
    assert run["parent_id"] == by_name["process"]["context"]["span_id"]
    assert run["attributes"]["jobqueue.job.id"] == job["id"] and run["attributes"]["jobqueue.tenant"] == "default"
    assert by_name["complete_job"]["parent_id"] == run["context"]["span_id"]
    assert by_name["complete_job"]["attributes"]["db.system"] == "postgresql"


# -- on, in process ---------------------------------------------------------------------------


@pytest.fixture
def exported(make_client):
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: PLC0415

    clients = {name: make_client(name, API_TOKEN=TOKEN) for name in ("enqueue", "process")}
    exporter = InMemorySpanExporter()
    tracing.install(exporter)
    yield clients, exporter
    tracing.reset()


def test_the_scheduler_path_and_a_retry_join_the_job_s_trace(exported, session):
    (clients, exporter) = exported
    auth = {"Authorization": f"Bearer {TOKEN}"}
    job = clients["enqueue"].post("/", json={"kind": "fail_until", "failures": 1, "maxAttempts": 2}, headers=auth)
    stored = stored_traceparent(session, job.get_json()["id"])
    job_trace = int(stored.split("-")[1], 16)
    for _ in range(2):  # a Scheduler tick each: no traceparent, and the retry
        assert clients["process"].post("/").status_code == 200
    spans = exporter.get_finished_spans()
    runs = [span for span in spans if span.name == "jobqueue.run"]
    assert [span.attributes["jobqueue.job.attempt"] for span in runs] == [1, 2]
    requests = [span for span in spans if span.name == "process"]
    for run, request in zip(runs, requests):
        assert run.context.trace_id == job_trace != request.context.trace_id
        assert [link.context.span_id for link in run.links] == [request.context.span_id]
    watcher = ("check_lease", "check_leases", "record_heartbeat", "record_heartbeats")
    assert not [span for span in spans if span.name in watcher]


class FakeGoogle:
    """Google's token endpoint and Cloud Trace's OTLP endpoint, on loopback."""

    def __init__(self):
        self.exports: list[tuple[Any, bytes]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/token":
                    answer, kind = json.dumps({"access_token": "fake-token", "expires_in": 3600}).encode(), "json"
                else:
                    fake.exports.append((self.headers, body))  # looked up case-insensitively
                    answer, kind = b"", "x-protobuf"
                self.send_response(200)
                self.send_header("Content-Type", f"application/{kind}")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def google(tmp_path, monkeypatch):
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: PLC0415

    fake = FakeGoogle()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    account = {
        "type": "service_account",
        "project_id": "tracing-test",
        "private_key_id": "1",
        "private_key": pem.decode(),
        "client_email": "runtime@tracing-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": f"{fake.url}/token",
    }
    (tmp_path / "account.json").write_text(json.dumps(account))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "account.json"))
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT", raising=False)
    monkeypatch.setattr(tracing, "CLOUD_TRACE_ENDPOINT", f"{fake.url}/v1/traces")
    yield fake
    tracing.reset()
    fake.server.shutdown()
    fake.server.server_close()


def test_cloud_trace_gets_the_spans_over_otlp_with_the_runtime_s_credentials(google, capsys):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: PLC0415

    from shared.core import log  # noqa: PLC0415

    tracing.configure("cloud-trace")
    with tracing.request_span("process", CALLER):  # flushed at its end, as before a response
        with tracing.span("jobqueue.run", **{"jobqueue.job.id": "j1"}):
            log.info("inside the run")
    log.info("outside any span")
    inside, outside = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert inside["logging.googleapis.com/trace"] == f"projects/tracing-test/traces/{CALLER_TRACE}"
    assert inside["logging.googleapis.com/trace_sampled"] is True
    assert not [key for key in outside if key.startswith("logging.googleapis.com/")]
    [(headers, body)] = google.exports
    assert headers["Authorization"] == "Bearer fake-token"  # the service account's, from the token endpoint
    assert headers["x-goog-user-project"] == "tracing-test"
    request = ExportTraceServiceRequest.FromString(body)
    [resource_spans] = request.resource_spans
    resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert resource["gcp.project_id"] == "tracing-test" and resource["service.name"] == "jobqueue"
    spans = [span for scope in resource_spans.scope_spans for span in scope.spans]
    assert {span.name for span in spans} == {"process", "jobqueue.run"}
    run = next(span for span in spans if span.name == "jobqueue.run")
    assert inside["logging.googleapis.com/spanId"] == run.span_id.hex()
    assert {span.trace_id.hex() for span in spans} == {CALLER_TRACE}


def test_an_exporter_that_cannot_start_turns_tracing_off_and_fails_no_request(make_client, monkeypatch, capsys):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/account.json")
    enqueue = make_client("enqueue", API_TOKEN=TOKEN, TRACING="cloud-trace")
    try:
        for _ in range(2):
            answer = enqueue.post("/", json={"kind": "noop"}, headers={"Authorization": f"Bearer {TOKEN}"})
            assert answer.status_code == 202
        errors = [line for line in capsys.readouterr().out.splitlines() if "Tracing is off" in line]
        assert len(errors) == 1 and "cloud-trace" in errors[0]
    finally:
        tracing.reset()
