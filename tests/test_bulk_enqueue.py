"""Bulk enqueue: POST enqueue with {"jobs": [...]}. One transaction, an answer per job in
order, per-job idempotency keys (nothing twice on a retry), a 400 for the whole request only
when it is not a list of 1 to 1,000 jobs, and a body limit of its own."""

import json

from shared.core import queue
from shared.core.queue import MAX_BULK_JOBS
from tests.support import window_far_from_its_end
from tests.test_functions import AUTH, post


def job_count(session) -> int:
    return session.run_sql("SELECT count(*) FROM jobs")[0][0]


def test_a_bulk_request_queues_every_job_and_answers_each_in_order(make_client, session):
    client = make_client("enqueue")
    response = post(client, {"jobs": [{"kind": "noop", "n": number, "priority": number} for number in range(5)]})
    assert response.status_code == 200
    answers = response.get_json()["jobs"]
    assert [answer["status"] for answer in answers] == [202] * 5
    assert [answer["priority"] for answer in answers] == [0, 1, 2, 3, 4]
    rows = session.run_sql("SELECT id::text, payload, job_status, last_event_seq FROM jobs")
    events = session.run_sql("SELECT count(*) FROM job_events WHERE seq = 1")[0][0]
    stored = {row[0]: row[1] for row in rows}
    assert [stored[answer["id"]] for answer in answers] == [{"n": number} for number in range(5)]
    assert {row[2] for row in rows} == {"queued"} and {row[3] for row in rows} == {1} and events == 5


def test_a_bad_job_costs_only_its_own_place(make_client, session):
    client = make_client("enqueue")
    jobs = [{"kind": "noop"}, {"kind": "noop", "priority": "high"}, "not an object", {"kind": "no-such-kind"},
            {"kind": "noop", "rerunOf": "00000000-0000-4000-8000-000000000000"}, {"kind": "noop", "last": True}]  # fmt: skip
    answers = post(client, {"jobs": jobs}).get_json()["jobs"]
    assert [answer["status"] for answer in answers] == [202, 400, 400, 400, 400, 202]
    assert answers[1]["error"]["details"][0]["field"] == "priority"
    assert answers[2]["error"]["details"][0]["field"] == "body"
    assert answers[4]["error"]["details"][0]["field"] == "rerunOf"
    assert job_count(session) == 2


def test_a_retried_bulk_request_with_keys_creates_nothing_twice(make_client, session):
    client = make_client("enqueue")
    body = {"jobs": [{"kind": "noop", "idempotencyKey": f"k{number}", "n": number} for number in range(20)]}
    first = post(client, body).get_json()["jobs"]
    again = post(client, body).get_json()["jobs"]
    assert [answer["status"] for answer in first] == [202] * 20
    assert [answer["status"] for answer in again] == [200] * 20
    assert [answer["id"] for answer in again] == [answer["id"] for answer in first]
    assert job_count(session) == 20


def test_a_key_repeated_within_one_request_names_the_first_job_or_a_conflict(make_client, session):
    client = make_client("enqueue")
    jobs = [{"kind": "noop", "idempotencyKey": "same", "n": 1}, {"kind": "noop", "idempotencyKey": "same", "n": 1},
            {"kind": "noop", "idempotencyKey": "same", "n": 2}]  # fmt: skip
    answers = post(client, {"jobs": jobs}).get_json()["jobs"]
    assert [answer["status"] for answer in answers] == [202, 200, 409]
    assert answers[1]["id"] == answers[0]["id"]
    assert answers[2]["error"]["code"] == "idempotency_key_reused"
    assert job_count(session) == 1


def test_a_request_that_is_not_a_list_of_1_to_1000_jobs_is_a_400_and_queues_nothing(make_client, session):
    client = make_client("enqueue")
    for jobs in ("noop", [], {"kind": "noop"}, [{"kind": "noop"}] * (MAX_BULK_JOBS + 1)):
        response = post(client, {"jobs": jobs})
        assert response.status_code == 400, jobs
        assert response.get_json()["error"]["details"][0]["field"] == "jobs"
    assert job_count(session) == 0


def test_jobs_beside_other_fields_is_payload_as_before(make_client, session):
    client = make_client("enqueue")
    response = post(client, {"kind": "noop", "jobs": [1, 2]})
    assert response.status_code == 202 and response.get_json()["kind"] == "noop"
    assert session.run_sql("SELECT payload FROM jobs")[0][0] == {"jobs": [1, 2]}


def test_bulk_has_a_body_limit_of_its_own_and_each_job_keeps_the_single_limit(make_client, session):
    client = make_client("enqueue", MAX_BODY_BYTES="2048", BULK_MAX_BODY_BYTES="20000")
    small = [{"kind": "noop", "blob": "x" * 1000} for _ in range(10)]  # 10 KB: over one job's limit, within bulk's
    assert post(client, {"jobs": small}).status_code == 200
    too_big = post(client, {"jobs": small * 3})  # 30 KB
    assert too_big.status_code == 413 and too_big.get_json()["error"]["code"] == "payload_too_large"
    answers = post(client, {"jobs": [{"kind": "noop", "blob": "x" * 3000}, {"kind": "noop"}]}).get_json()["jobs"]
    assert [answer["status"] for answer in answers] == [413, 202]
    single = client.post("/", data=json.dumps({"kind": "noop", "blob": "x" * 5000}), content_type="application/json",
                         headers=AUTH)  # fmt: skip
    assert single.status_code == 413  # one job is held to MAX_BODY_BYTES as before
    assert job_count(session) == 11


def test_with_the_default_limits_a_bulk_request_of_1000_jobs_goes_through(make_client, session):
    client = make_client("enqueue")
    response = post(client, {"jobs": [{"kind": "noop", "n": number} for number in range(MAX_BULK_JOBS)]})
    assert response.status_code == 200
    assert {answer["status"] for answer in response.get_json()["jobs"]} == {202}
    assert job_count(session) == MAX_BULK_JOBS


def test_a_bulk_request_is_one_request_and_its_jobs_count_against_the_jobs_quota(make_client, session):
    client = make_client(
        "enqueue",
        RATE_LIMIT_ENQUEUE="3",
        RATE_LIMIT_JOBS="10",
        RATE_LIMIT_WINDOW_SECONDS=str(window_far_from_its_end()),
    )
    assert post(client, {"jobs": [{"kind": "noop"}] * 8}).status_code == 200  # 1 request, 8 jobs
    over = post(client, {"jobs": [{"kind": "noop"}] * 5})  # 13 jobs: over the quota, nothing queued
    assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1
    assert job_count(session) == 8
    refused = post(client, {"kind": "noop"})  # the third request: within 3 requests, but the quota is spent
    assert refused.status_code == 429 and job_count(session) == 8


def test_requests_are_counted_as_requests_whatever_their_jobs(make_client, session):
    client = make_client(
        "enqueue",
        RATE_LIMIT_ENQUEUE="2",
        RATE_LIMIT_JOBS="1000",
        RATE_LIMIT_WINDOW_SECONDS=str(window_far_from_its_end()),
    )
    assert [post(client, {"jobs": [{"kind": "noop"}] * 50}).status_code for _ in range(3)] == [200, 200, 429]
    assert job_count(session) == 100


def test_each_answer_is_the_job_as_stored_field_by_field(session, registry):
    """The bulk insert returns only what the database chose (id, created_at, run_at) and builds
    the rest of each job from the request: that must be the row as stored, every field."""
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    requests = [
        ({"n": 1}, {"kind": "noop"}),
        ({"nested": {"list": [1, 2.5, None, "é"]}}, {"kind": "noop", "priority": -7, "max_attempts": 9,
         "idempotency_key": "key-1", "run_at": "2031-02-03T04:05:06.789Z",
         "callback_url": "https://example.com/hook?token=x"}),
    ]  # fmt: skip
    answers = queue.enqueue_many(session, registry, requests, tenant="tenant-a", traceparent=traceparent)
    for job, created in answers:
        assert created
        assert job == queue.get_job(session, job.id)
        assert job.to_json() == queue.get_job(session, job.id).to_json()
