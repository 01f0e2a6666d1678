"""Crashes, zombies and secrets: what must hold whatever happens to an invocation."""

import json
import threading
import time

import httpx
import pytest

from local.stack import DEV_TOKEN, Stack

AUTH = {"Authorization": f"Bearer {DEV_TOKEN}"}


@pytest.fixture
def stack(database_url, tmp_path):
    extra = {
        "HEARTBEAT_SECONDS": "0.3",
        "STALLED_AFTER_SECONDS": "1.5",
        "CANCEL_CHECK_SECONDS": "0.1",
        "RETRY_BASE_SECONDS": "0",
        "WEBHOOK_SECRET": "whsec-never-logged-42",
    }
    running = Stack.on_free_ports(database_url=database_url, extra_env=extra, scheduler=False, log_dir=tmp_path)
    running.start()
    yield running
    running.stop()


def enqueue(stack, body):
    response = httpx.post(stack.url("enqueue"), json=body, headers=AUTH, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def status(stack, job_id):
    return httpx.get(stack.url("status"), params={"id": job_id}, timeout=30).json()


def crash_process_mid_job(stack, job_id):
    """Start the job through process, then SIGKILL the process function mid-job."""
    thread = threading.Thread(target=lambda: _quiet_post(stack.url("process"), {"id": job_id}), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not status(stack, job_id)["logs"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    stack.stop_function("process")
    thread.join(10)
    stack.start_function("process")


def _quiet_post(url, body):
    try:
        httpx.post(url, json=body, timeout=60)
    except httpx.HTTPError:
        pass  # the instance died under the request, as intended


def test_a_crashed_invocation_is_requeued_by_sweep_and_completes_on_the_next_attempt(stack):
    job = enqueue(stack, {"kind": "demo", "steps": 6, "stepSeconds": 0.2, "maxAttempts": 2})
    crash_process_mid_job(stack, job["id"])
    assert status(stack, job["id"])["jobStatus"] == "running"  # nobody left to finish it...
    time.sleep(1.8)  # ...until its heartbeat is older than STALLED_AFTER_SECONDS
    swept = httpx.post(stack.url("sweep"), timeout=30).json()
    assert swept["requeued"] == 1
    done = httpx.post(stack.url("process"), timeout=60).json()
    assert done["id"] == job["id"] and done["jobStatus"] == "completed" and done["attempts"] == 2


def test_a_crashed_invocation_with_no_attempts_left_fails_with_a_clear_error(stack):
    job = enqueue(stack, {"kind": "demo", "steps": 6, "stepSeconds": 0.2, "maxAttempts": 1})
    crash_process_mid_job(stack, job["id"])
    time.sleep(1.8)
    assert httpx.post(stack.url("sweep"), timeout=30).json()["failed"] == 1
    final = status(stack, job["id"])
    assert final["jobStatus"] == "failed" and final["error"] == "Job processor stopped responding"


def test_no_token_or_secret_reaches_a_log_line_or_an_error(stack, tmp_path):
    job = enqueue(stack, {"kind": "demo", "steps": 1, "stepSeconds": 0})
    httpx.post(stack.url("process"), timeout=30)
    for token in (DEV_TOKEN, "wrong-" + DEV_TOKEN, DEV_TOKEN[:-1]):
        answer = httpx.post(stack.url("cancel"), json={"id": job["id"]}, headers={"Authorization": f"Bearer {token}"})
        assert token not in answer.text
    stack.stop()
    logs = "".join(path.read_text() for path in tmp_path.glob("*.log"))
    assert "Job started" in logs  # the logs were written...
    for secret in (DEV_TOKEN, "whsec-never-logged-42"):
        assert secret not in logs  # ...and hold no token or secret
    for line in (line for line in logs.splitlines() if line.startswith("{")):
        entry = json.loads(line)
        assert entry["severity"] in ("INFO", "WARNING", "ERROR") and entry["message"]
