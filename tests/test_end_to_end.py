"""The five functions as real functions-framework HTTP servers, driven by the client over HTTP."""

import json
import threading
import time

import httpx
import pytest
from httpx_sse import connect_sse

from client.api import JobQueueClient
from local.stack import DEV_TOKEN, Stack


@pytest.fixture
def stack(database_url, tmp_path):
    extra = {"CANCEL_CHECK_SECONDS": "0.1", "HEARTBEAT_SECONDS": "1", "STREAM_KEEPALIVE_SECONDS": "1"}
    with Stack.on_free_ports(database_url=database_url, extra_env=extra, scheduler=False, log_dir=tmp_path) as running:
        yield running


@pytest.fixture
def client(stack):
    return JobQueueClient(
        enqueue_url=stack.url("enqueue"),
        status_url=stack.url("status"),
        cancel_url=stack.url("cancel"),
        process_url=stack.url("process"),
        token=DEV_TOKEN,
    )


def in_background(call):
    results = []
    thread = threading.Thread(target=lambda: results.append(call()), daemon=True)
    thread.start()
    return thread, results


def test_enqueue_process_and_follow_with_a_reconnect_that_loses_and_repeats_nothing(client, stack):
    job = client.enqueue({"kind": "demo", "steps": 8, "stepSeconds": 0.15})
    assert job["jobStatus"] == "queued" and job["streamUrl"].startswith(stack.url("status"))
    worker, processed = in_background(lambda: client.process(job["id"]))

    # First connection: read a few numbered events, then drop the connection mid-job.
    first_ids = []
    with httpx.Client(timeout=30) as http:
        with connect_sse(http, "GET", stack.url("status"), params={"id": job["id"], "stream": "1"}) as source:
            for sse in source.iter_sse():
                if sse.id:
                    first_ids.append(int(sse.id))
                if len(first_ids) == 5:
                    break
    # Second connection resumes from the last id seen.
    rest = list(client.follow(job["id"], last_event_id=str(first_ids[-1])))
    worker.join(30)
    assert processed[0]["jobStatus"] == "completed"

    resumed_ids = [int(e.id) for e in rest if e.event != "done"]
    seen = first_ids + resumed_ids
    assert seen == list(range(1, len(seen) + 1)), "no event lost, none repeated, in order"
    assert rest[-1].event == "done" and rest[-1].data["jobStatus"] == "completed"
    full = [e for e in client.follow(job["id"]) if e.event not in ("snapshot", "done")]
    assert [int(e.id) for e in full] == seen
    logs = [e.data["message"] for e in rest if e.event == "log"]
    assert logs[-1] == "Step 8 of 8 done"


def test_cancel_a_running_job_over_http(client):
    job = client.enqueue({"kind": "demo", "steps": 100, "stepSeconds": 0.2})
    worker, processed = in_background(lambda: client.process(job["id"]))
    for event in client.follow(job["id"]):
        if event.event == "log":  # it is running and has done a step
            break
    cancelled = client.cancel(job["id"])
    assert cancelled["cancelRequested"] is True and cancelled["outcome"] == "cancel_requested"
    worker.join(15)  # left alone, the job would run for 20 s more (how fast is make bench's question)
    assert not worker.is_alive()
    assert processed[0]["jobStatus"] == "cancelled"
    assert client.status(job["id"])["jobStatus"] == "cancelled"
    events = list(client.follow(job["id"]))
    assert events[-1].event == "done" and events[-1].data["jobStatus"] == "cancelled"


def test_the_cli_enqueues_and_follows(stack, capsys):
    from client.__main__ import main  # noqa: PLC0415

    urls = [f"--{name}-url={stack.url(name)}" for name in ("enqueue", "process", "status", "cancel")]

    def process_until_one_ran():  # Cloud Scheduler's part: call process until a job ran
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and httpx.post(stack.url("process"), timeout=60).status_code == 204:
            time.sleep(0.1)

    worker, _ = in_background(process_until_one_ran)
    body = json.dumps({"kind": "demo", "steps": 2, "stepSeconds": 0.3})
    assert main([*urls, "--token", DEV_TOKEN, "enqueue", body, "--follow"]) == 0
    out = capsys.readouterr().out
    assert "Step 2 of 2 done" in out and "completed" in out
    worker.join(30)


def test_make_demo_ends_with_a_newsletter_from_the_demo_feeds():
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from local.stack import REPO  # noqa: PLC0415

    done = subprocess.run([sys.executable, "-m", "local.demo"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "100% Complete (completed)" in out
    assert "# Newsletter for January 1–7, 2025" in out and "5 stories from 3 sources" in out
    assert "Cutting cold starts in half on Cloud Run" in out
    assert "Our 2024 year in review" not in out  # outside the range
