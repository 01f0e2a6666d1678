"""Re-run: enqueue {"rerunOf": id} queues a new job with a failed or cancelled job's kind and
payload, in its tenant, linked to it by rerunOf (on the job and in its first event)."""

import json

import pytest

from shared.core import maintenance, queue

TOKENS = {"acme": "acme-token-0123456789", "globex": "globex-token-0123456789"}
ADMIN = "admin-token-0123456789"
ACME, GLOBEX, AS_ADMIN = ({"Authorization": f"Bearer {t}"} for t in (*TOKENS.values(), ADMIN))


@pytest.fixture
def enqueue(make_client):
    env = {"API_TOKENS": ",".join(f"{t}={token}" for t, token in TOKENS.items()), "ADMIN_TOKEN": ADMIN}
    return make_client("enqueue", **env)


def post(client, body, headers=ACME):
    return client.post("/", data=json.dumps(body), content_type="application/json", headers=headers)


def failed_job(enqueue, session, headers=ACME, **body):
    job = post(enqueue, {"kind": "fail_until", "failures": 5, "maxAttempts": 1, **body}, headers).get_json()
    claimed = queue.claim_next(session)
    queue.fail(session, queue.Lease.of(claimed), "broke on purpose", retry_delay=0)
    assert queue.get_job(session, job["id"]).job_status == "failed"
    return job


def test_a_failed_job_is_rerun_as_a_new_job_with_its_payload_and_a_link(enqueue, session):
    original = failed_job(enqueue, session, priority=4, topic="weekly")
    response = post(enqueue, {"rerunOf": original["id"]})
    assert response.status_code == 202
    rerun = response.get_json()
    assert rerun["id"] != original["id"] and rerun["rerunOf"] == original["id"]
    assert (rerun["kind"], rerun["jobStatus"], rerun["priority"], rerun["maxAttempts"]) == (
        "fail_until",
        "queued",
        4,
        1,
    )
    stored = queue.get_job(session, rerun["id"])
    assert stored.payload == {"failures": 5, "topic": "weekly"} and stored.tenant == "acme"
    (first,) = queue.list_events(session, rerun["id"])
    assert first.data == {"jobStatus": "queued", "currentStep": "Queued", "rerunOf": original["id"]}
    assert queue.get_job(session, original["id"]).job_status == "failed"  # the original is left as it was


def test_a_cancelled_job_is_rerun_and_queue_options_may_be_changed(enqueue, session, function_env):
    job = post(enqueue, {"kind": "noop", "priority": 1}).get_json()
    queue.cancel(session, job["id"])
    rerun = post(enqueue, {"rerunOf": job["id"], "priority": 9, "maxAttempts": 2, "idempotencyKey": "again"})
    assert rerun.status_code == 202
    assert (rerun.get_json()["priority"], rerun.get_json()["maxAttempts"]) == (9, 2)
    repeated = post(enqueue, {"rerunOf": job["id"], "priority": 9, "maxAttempts": 2, "idempotencyKey": "again"})
    assert repeated.status_code == 200 and repeated.get_json()["id"] == rerun.get_json()["id"]
    # The key names that request: the same re-run with other options is another request.
    assert post(enqueue, {"rerunOf": job["id"], "idempotencyKey": "again"}).status_code == 409


def test_a_job_that_did_not_fail_or_was_not_cancelled_is_a_409(enqueue, session):
    queued = post(enqueue, {"kind": "noop"}).get_json()
    conflict = post(enqueue, {"rerunOf": queued["id"]})
    assert conflict.status_code == 409 and "queued" in conflict.get_json()["error"]["message"]
    claimed = queue.claim_next(session)
    queue.complete(session, queue.Lease.of(claimed), None)
    assert post(enqueue, {"rerunOf": queued["id"]}).status_code == 409


def test_another_tenants_job_is_a_404_and_the_admin_reruns_it_in_its_tenant(enqueue, session):
    original = failed_job(enqueue, session)
    unknown = post(enqueue, {"rerunOf": "00000000-0000-4000-8000-000000000000"}, GLOBEX)
    refused = post(enqueue, {"rerunOf": original["id"]}, GLOBEX)
    assert refused.status_code == unknown.status_code == 404
    assert refused.get_json() == unknown.get_json()
    by_admin = post(enqueue, {"rerunOf": original["id"]}, AS_ADMIN)
    assert by_admin.status_code == 202
    assert queue.get_job(session, by_admin.get_json()["id"]).tenant == "acme"


def test_an_archived_failed_job_can_be_rerun(enqueue, session):
    original = failed_job(enqueue, session)
    session.run_sql("UPDATE jobs SET finished_at = now() - interval '40 days'")
    assert maintenance.sweep(session, stalled_after_seconds=60, retention_days=30).archived == 1
    assert post(enqueue, {"rerunOf": original["id"]}).status_code == 202


@pytest.mark.parametrize(
    "body",
    [
        {"rerunOf": "not-an-id"},
        {"rerunOf": 17},
        {"rerunOf": "00000000-0000-4000-8000-000000000000", "topic": "a payload field"},
    ],
)
def test_a_bad_rerun_request_is_a_400_naming_rerun_of(enqueue, body):
    response = post(enqueue, body)
    assert response.status_code == 400
    assert [d["field"] for d in response.get_json()["error"]["details"]] == ["rerunOf"]


def test_a_rerun_is_validated_again_like_a_new_job(enqueue, session):
    original = failed_job(enqueue, session)
    response = post(enqueue, {"rerunOf": original["id"], "priority": "high"})
    assert response.status_code == 400
    assert [d["field"] for d in response.get_json()["error"]["details"]] == ["priority"]
