"""Each function through functions_framework.create_app(...).test_client(), every path."""

import json
import threading
import uuid

import pytest

from local.functions import FUNCTIONS
from shared.core import queue
from tests import handlers
from tests.support import API_TOKEN, admin_session, scratch_name, with_database

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
UNKNOWN = "00000000-0000-4000-8000-000000000000"
SEED_BODY = {
    "dateRange": {"from": "2025-01-01", "to": "2025-01-07"},
    "selectedSources": [1, 2, 3],
    "outputFormat": "markdown",
}


def post(client, body, headers=None):
    return client.post("/", data=json.dumps(body), content_type="application/json", headers={**AUTH, **(headers or {})})


def error_fields(response):
    return [detail["field"] for detail in response.get_json()["error"].get("details", [])]


# -- enqueue ---------------------------------------------------------------------------


def test_enqueue_answers_202_with_the_job_in_the_seed_field_names(make_client):
    client = make_client("enqueue", STATUS_URL="https://status.example/status")
    response = post(client, {"kind": "noop", "priority": 3, "maxAttempts": 2, "topic": "weekly"})
    assert response.status_code == 202
    job = response.get_json()
    for field in ("id", "generationId", "kind", "jobStatus", "progress", "currentStep", "priority", "attempts",
                  "maxAttempts", "createdAt", "runAt", "processedAt", "finishedAt", "lastHeartbeat", "result",
                  "error", "cancelRequested"):  # fmt: skip
        assert field in job
    assert job["jobStatus"] == "queued" and job["priority"] == 3 and job["maxAttempts"] == 2
    assert job["statusUrl"] == f"https://status.example/status?id={job['id']}"
    assert job["streamUrl"].endswith("&stream=1")


def test_enqueue_keeps_every_other_field_as_the_payload(make_client, session):
    client = make_client("enqueue")
    job = post(client, {"kind": "noop", **SEED_BODY}).get_json()
    assert queue.get_job(session, job["id"]).payload == SEED_BODY


def test_enqueue_with_a_seen_idempotency_key_answers_200_with_the_same_job(make_client):
    client = make_client("enqueue")
    first = post(client, {"kind": "noop", "idempotencyKey": "abc"})
    second = post(client, {"kind": "noop", "idempotencyKey": "abc"})
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.get_json()["id"] == second.get_json()["id"]


def test_enqueue_names_each_bad_field_in_a_400(make_client, session):
    client = make_client("enqueue")
    response = post(client, {"kind": "nope", "maxAttempts": 0, "runAt": "later"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_request"
    assert set(error_fields(response)) == {"maxAttempts", "runAt"}
    response = post(client, {"kind": "nope"})
    assert response.status_code == 400 and error_fields(response) == ["kind"]
    assert session.run_sql("SELECT count(*) FROM jobs")[0][0] == 0


def test_enqueue_refuses_what_is_not_a_json_object(make_client):
    client = make_client("enqueue")
    assert client.post("/", data="[1, 2]", content_type="application/json", headers=AUTH).status_code == 400
    bad = client.post("/", data="{nope", content_type="application/json", headers=AUTH)
    assert bad.status_code == 400 and bad.get_json()["error"]["code"] == "invalid_json"
    utf = client.post("/", data=b'{"a": "\xff\xfe"}', content_type="application/json", headers=AUTH)
    assert utf.status_code == 400 and "UTF-8" in utf.get_json()["error"]["message"]
    deep = client.post("/", data="[" * 100000 + "]" * 100000, content_type="application/json", headers=AUTH)
    assert deep.status_code in (400, 413)
    assert (
        client.post("/", data="a=1", content_type="application/x-www-form-urlencoded", headers=AUTH).status_code == 415
    )
    assert client.post("/", data="", content_type="application/json", headers=AUTH).status_code == 400


def test_enqueue_refuses_a_body_over_the_limit_with_413(make_client):
    client = make_client("enqueue", MAX_BODY_BYTES="2048")
    response = post(client, {"kind": "noop", "blob": "x" * 5000})
    assert response.status_code == 413 and response.get_json()["error"]["code"] == "payload_too_large"


def test_enqueue_with_api_token_set_needs_the_bearer_token(make_client):
    client = make_client("enqueue")
    no_token = client.post("/", data="{}", content_type="application/json")
    assert no_token.status_code == 401 and no_token.get_json()["error"]["code"] == "unauthorized"
    wrong = post(client, {"kind": "noop"}, headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401


def test_enqueue_without_api_token_is_closed_unless_anonymous_enqueue_is_allowed(make_client):
    closed = make_client("enqueue", API_TOKEN=None)
    assert closed.post("/", data='{"kind": "noop"}', content_type="application/json").status_code == 401
    client = make_client("enqueue", API_TOKEN=None, ALLOW_ANONYMOUS_ENQUEUE="1")
    assert client.post("/", data='{"kind": "noop"}', content_type="application/json").status_code == 202


def test_every_function_answers_405_for_other_methods_with_json(make_client):
    for name in ("enqueue", "process", "cancel", "sweep"):
        response = make_client(name).delete("/")
        assert response.status_code == 405 and response.get_json()["error"]["code"] == "method_not_allowed"
    assert make_client("status").post("/").status_code == 405


def test_every_function_answers_cors_preflight(make_client):
    for name in FUNCTIONS:
        response = make_client(name).options(
            "/", headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
        )
        assert response.status_code == 204
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        allowed = response.headers["Access-Control-Allow-Headers"]
        assert all(h in allowed for h in ("Authorization", "Content-Type", "Last-Event-ID"))


def test_cors_follows_allowed_origins(make_client):
    client = make_client("status", ALLOWED_ORIGINS="https://app.example, https://admin.example")
    good = client.options("/", headers={"Origin": "https://admin.example"})
    assert good.headers["Access-Control-Allow-Origin"] == "https://admin.example"
    bad = client.options("/", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in bad.headers


# -- process ---------------------------------------------------------------------------


def test_process_with_nothing_due_answers_204(make_client):
    assert make_client("process").post("/").status_code == 204


def test_process_from_scheduler_runs_the_next_job_to_the_end(make_client):
    job = post(make_client("enqueue"), {"kind": "steps", "steps": 2}).get_json()
    response = make_client("process").post("/")  # Cloud Scheduler: empty body
    assert response.status_code == 200
    done = response.get_json()
    assert done["id"] == job["id"] and done["jobStatus"] == "completed" and done["outcome"] == "completed"
    assert done["result"] == {"steps": 2} and done["progress"] == 100


def test_process_of_a_named_job_runs_that_job(make_client):
    enqueue = make_client("enqueue")
    first = post(enqueue, {"kind": "noop"}).get_json()
    second = post(enqueue, {"kind": "noop"}).get_json()
    response = post(make_client("process"), {"id": second["id"]})
    assert response.status_code == 200 and response.get_json()["id"] == second["id"]
    assert response.get_json()["jobStatus"] == "completed"
    assert make_client("status").get(f"/?id={first['id']}").get_json()["jobStatus"] == "queued"


def test_a_duplicate_delivery_of_a_finished_job_is_skipped_and_runs_nothing(make_client, session):
    job = post(make_client("enqueue"), {"kind": "count", "tag": "dup-finished"}).get_json()
    process = make_client("process")
    assert post(process, {"id": job["id"]}).get_json()["jobStatus"] == "completed"
    again = post(process, {"id": job["id"]})
    assert again.status_code == 200
    assert again.get_json()["skipped"] is True and again.get_json()["reason"] == "finished"
    assert handlers.RUNS["dup-finished"] == 1
    assert queue.get_job(session, job["id"]).attempts == 1


def test_a_duplicate_delivery_of_a_running_job_is_skipped(make_client):
    gate = str(uuid.uuid4())
    job = post(make_client("enqueue"), {"kind": "wait_for_cancel", "gate": gate, "seconds": 5}).get_json()
    process = make_client("process")
    first = []
    worker = threading.Thread(target=lambda: first.append(post(process, {"id": job["id"]})))
    worker.start()
    assert handlers.STARTED.setdefault(gate, threading.Event()).wait(5)
    again = post(make_client("process"), {"id": job["id"]})
    assert again.status_code == 200 and again.get_json()["reason"] == "running"
    handlers.GATES.setdefault(gate, threading.Event()).set()
    worker.join(10)
    assert first[0].get_json()["jobStatus"] == "completed"


def test_process_of_an_unknown_or_malformed_id(make_client):
    process = make_client("process")
    assert post(process, {"id": UNKNOWN}).status_code == 404
    bad = post(process, {"id": "123"})
    assert bad.status_code == 400 and error_fields(bad) == ["id"]


# -- status ----------------------------------------------------------------------------


def test_status_answers_the_job_and_its_log_lines(make_client):
    job = post(make_client("enqueue"), {"kind": "steps", "steps": 2}).get_json()
    make_client("process").post("/")
    response = make_client("status").get(f"/?id={job['id']}")
    assert response.status_code == 200
    body = response.get_json()
    assert body["jobStatus"] == "completed"
    assert [line["message"] for line in body["logs"]] == ["line 1", "line 2"]
    assert [line["seq"] for line in body["logs"]] == sorted(line["seq"] for line in body["logs"])


def test_status_of_an_unknown_id_is_404_and_of_a_malformed_one_400(make_client):
    status = make_client("status")
    assert status.get(f"/?id={UNKNOWN}").status_code == 404
    assert status.get("/?id=1 OR 1=1").status_code == 400
    assert status.get("/").status_code == 400


def parse_sse(text: str) -> list[dict]:
    events = []
    for block in text.strip().split("\n\n"):
        fields = {}
        for line in block.split("\n"):
            if line.startswith(":") or not line:
                continue
            key, _, value = line.partition(": ")
            fields[key] = value
        if "event" in fields:
            events.append({"id": fields.get("id"), "event": fields["event"], "data": json.loads(fields["data"])})
    return events


def test_status_stream_replays_every_event_then_done_and_closes(make_client):
    job = post(make_client("enqueue"), {"kind": "steps", "steps": 2}).get_json()
    make_client("process").post("/")
    response = make_client("status").get(f"/?id={job['id']}", headers={"Accept": "text/event-stream"})
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    text = response.get_data(as_text=True)
    assert text.startswith("retry: ")
    events = parse_sse(text)
    assert events[0]["event"] == "snapshot" and events[0]["id"] is None
    numbered = [e for e in events[1:] if e["event"] != "done"]
    assert [int(e["id"]) for e in numbered] == list(range(1, len(numbered) + 1))
    assert events[-1]["event"] == "done" and events[-1]["data"]["jobStatus"] == "completed"


def test_status_stream_resumes_after_last_event_id_without_repeats(make_client):
    job = post(make_client("enqueue"), {"kind": "steps", "steps": 3}).get_json()
    make_client("process").post("/")
    status = make_client("status")
    everything = parse_sse(status.get(f"/?id={job['id']}&stream=1").get_data(as_text=True))
    numbered = [e for e in everything if e["event"] not in ("snapshot", "done")]
    resumed = parse_sse(status.get(f"/?id={job['id']}&stream=1", headers={"Last-Event-ID": "4"}).get_data(as_text=True))
    assert resumed[0]["event"] != "snapshot"
    assert [e["id"] for e in resumed if e["event"] != "done"] == [e["id"] for e in numbered[4:]]
    # Nothing missed and the job is over: 204 tells EventSource to stop reconnecting.
    last = numbered[-1]["id"]
    assert status.get(f"/?id={job['id']}&stream=1", headers={"Last-Event-ID": last}).status_code == 204
    assert status.get(f"/?id={job['id']}&stream=1", headers={"Last-Event-ID": "x"}).status_code == 400


def test_status_stream_delivers_live_events_quickly_and_closes_at_the_time_limit(make_client, session):
    job = post(make_client("enqueue"), {"kind": "noop"}).get_json()
    status = make_client("status", STREAM_MAX_SECONDS="1.5", STREAM_KEEPALIVE_SECONDS="0.5")
    response = status.get(f"/?id={job['id']}&stream=1")
    chunks = iter(response.response)
    assert next(chunks).startswith(b"retry: ")
    assert b"snapshot" in next(chunks)
    assert b'"jobStatus":"queued"' in next(chunks)
    claimed = queue.claim_next(session)
    arrived = next(chunks)  # how soon is make bench's question (propagation p99)
    assert b'"jobStatus":"running"' in arrived
    rest = b"".join(chunks)
    assert b": keep-alive" in rest and b"stream time limit reached" in rest
    queue.complete(session, queue.Lease.of(claimed), None)


# -- cancel ----------------------------------------------------------------------------


def test_cancel_needs_the_token_and_refuses_everyone_without_one(make_client):
    job = post(make_client("enqueue"), {"kind": "noop"}).get_json()
    cancel = make_client("cancel")
    body = json.dumps({"generationId": job["id"]})
    assert cancel.post("/", data=body, content_type="application/json").status_code == 401
    for header in ("Bearer wrong", "Bearer " + API_TOKEN[:-1], "Bearer " + API_TOKEN + "x", API_TOKEN, "Basic abc"):
        response = cancel.post("/", data=body, content_type="application/json", headers={"Authorization": header})
        assert response.status_code == 401
        assert API_TOKEN not in response.get_data(as_text=True)
    closed = make_client("cancel", API_TOKEN=None)
    with_token = closed.post("/", data=body, content_type="application/json", headers=AUTH)
    assert with_token.status_code == 401


def test_cancel_a_queued_job_then_again(make_client):
    job = post(make_client("enqueue"), {"kind": "noop"}).get_json()
    cancel = make_client("cancel")
    first = post(cancel, {"generationId": job["id"]})
    assert first.status_code == 200 and first.get_json()["jobStatus"] == "cancelled"
    assert first.get_json()["outcome"] == "cancelled"
    again = post(cancel, {"id": job["id"]})
    assert again.status_code == 200 and again.get_json()["outcome"] == "already_cancelled"


def test_cancel_a_running_job_stops_it(make_client):
    gate = str(uuid.uuid4())
    job = post(make_client("enqueue"), {"kind": "wait_for_cancel", "gate": gate, "seconds": 60}).get_json()
    process = make_client("process")
    ran = []
    worker = threading.Thread(target=lambda: ran.append(process.post("/")))
    worker.start()
    assert handlers.STARTED.setdefault(gate, threading.Event()).wait(5)
    response = post(make_client("cancel"), {"generationId": job["id"]})
    assert response.status_code == 200 and response.get_json()["cancelRequested"] is True
    assert response.get_json()["outcome"] == "cancel_requested"
    worker.join(30)  # left alone, the handler would wait 60 s (how fast is make bench's question)
    assert not worker.is_alive()
    assert ran[0].get_json()["jobStatus"] == "cancelled"


def test_cancel_of_a_finished_job_is_409_and_of_an_unknown_one_404(make_client):
    job = post(make_client("enqueue"), {"kind": "noop"}).get_json()
    make_client("process").post("/")
    cancel = make_client("cancel")
    conflict = post(cancel, {"generationId": job["id"]})
    assert conflict.status_code == 409 and conflict.get_json()["error"]["code"] == "conflict"
    assert post(cancel, {"generationId": UNKNOWN}).status_code == 404
    assert post(cancel, {}).status_code == 400
    assert post(cancel, {"generationId": "'; DROP TABLE jobs; --"}).status_code == 400


# -- sweep -----------------------------------------------------------------------------


def test_sweep_answers_its_counts(make_client, session):
    job = post(make_client("enqueue"), {"kind": "noop", "maxAttempts": 1}).get_json()
    queue.claim_next(session)
    session.run_sql(
        "UPDATE jobs SET last_heartbeat = now() - interval '2 hours' WHERE id = CAST(:id AS uuid)", id=job["id"]
    )
    response = make_client("sweep").post("/")
    assert response.status_code == 200
    assert response.get_json() == {
        "requeued": 0,
        "failed": 1,
        "cancelled": 0,
        "archived": 0,
        "purged": 0,
        "redispatched": 0,
    }


# -- the database going away -----------------------------------------------------------


def test_an_unreachable_database_is_a_503_with_retry_after(make_client, free_port):
    client = make_client(
        "enqueue", DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port}/nothing", DB_TIMEOUT_SECONDS="1"
    )
    response = post(client, {"kind": "noop"})
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.get_json()["error"]["code"] == "unavailable"


@pytest.fixture
def free_port():
    from local.postgres import free_port  # noqa: PLC0415

    return free_port()


def test_migrate_on_start_brings_an_empty_database_up_to_date(make_client, admin_url):
    fresh = scratch_name("jobqueue_fresh_deploy")
    admin = admin_session(admin_url)
    admin.run_sql(f"DROP DATABASE IF EXISTS {fresh}")
    admin.run_sql(f"CREATE DATABASE {fresh}")
    try:
        client = make_client("enqueue", DATABASE_URL=with_database(admin_url, fresh), MIGRATE_ON_START="1")
        assert post(client, {"kind": "noop"}).status_code == 202
        assert post(client, {"kind": "noop"}).status_code == 202
    finally:
        admin.run_sql(f"DROP DATABASE {fresh} WITH (FORCE)")
        admin.close()


def test_streams_past_the_limit_are_refused_with_429_and_a_closed_one_frees_its_slot(make_client):
    job = post(make_client("enqueue"), {"kind": "noop"}).get_json()
    status = make_client("status", MAX_OPEN_STREAMS="1")
    first = status.get(f"/?id={job['id']}&stream=1")
    assert next(iter(first.response)).startswith(b"retry: ")
    refused = status.get(f"/?id={job['id']}&stream=1")
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "2"
    assert refused.get_json()["error"]["code"] == "too_many_streams"
    assert status.get(f"/?id={job['id']}").status_code == 200  # plain requests are not limited
    first.close()
    again = status.get(f"/?id={job['id']}&stream=1")
    assert again.status_code == 200
    again.close()
