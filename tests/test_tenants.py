"""Tenants, path by path: cancel and idempotency keys see only the caller's tenant's jobs
(another tenant's is a 404, never a 403), the admin token reaches all, and a job id stays
the capability for the job's own status."""

import json

import pytest

from shared.core import maintenance, queue

TOKENS = {"acme": "acme-token-0123456789", "globex": "globex-token-0123456789"}
ADMIN = "admin-token-0123456789"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


ACME, GLOBEX, AS_ADMIN = bearer(TOKENS["acme"]), bearer(TOKENS["globex"]), bearer(ADMIN)


@pytest.fixture
def clients(make_client):
    env = {"API_TOKENS": ",".join(f"{t}={token}" for t, token in TOKENS.items()), "ADMIN_TOKEN": ADMIN}
    return {name: make_client(name, **env) for name in ("enqueue", "status", "cancel")}


def post(client, body, headers):
    return client.post("/", data=json.dumps(body), content_type="application/json", headers=headers)


def enqueue(clients, headers, **body):
    response = post(clients["enqueue"], {"kind": "noop", **body}, headers)
    assert response.status_code in (200, 202), response.get_json()
    return response.get_json()


def test_enqueue_stamps_the_callers_tenant(clients, session):
    acme, globex, admin = (enqueue(clients, h)["id"] for h in (ACME, GLOBEX, AS_ADMIN))
    assert [queue.get_job(session, i).tenant for i in (acme, globex, admin)] == ["acme", "globex", "*"]


@pytest.mark.parametrize("state", ["queued", "running", "completed", "archived"])
def test_another_tenants_job_is_a_404_on_cancel_whatever_its_state(clients, session, state):
    job_id = enqueue(clients, ACME)["id"]
    if state != "queued":
        claimed = queue.claim_next(session)
        if state != "running":
            queue.complete(session, queue.Lease.of(claimed), None)
    if state == "archived":
        session.run_sql("UPDATE jobs SET finished_at = now() - interval '40 days'")
        assert maintenance.sweep(session, stalled_after_seconds=60, retention_days=30).archived == 1
    unknown = post(clients["cancel"], {"generationId": "00000000-0000-4000-8000-000000000000"}, GLOBEX)
    refused = post(clients["cancel"], {"generationId": job_id}, GLOBEX)
    assert refused.status_code == 404
    assert refused.get_json() == unknown.get_json()  # the same answer as for no job at all
    job = queue.get_job(session, job_id)
    assert job.cancel_requested_at is None and job.job_status == ("completed" if state == "archived" else state)


def test_the_owner_and_the_admin_may_cancel(clients, session):
    mine = enqueue(clients, ACME)["id"]
    assert post(clients["cancel"], {"generationId": mine}, ACME).get_json()["outcome"] == "cancelled"
    theirs = enqueue(clients, GLOBEX)["id"]
    assert post(clients["cancel"], {"generationId": theirs}, AS_ADMIN).get_json()["outcome"] == "cancelled"
    assert post(clients["cancel"], {"generationId": theirs}, AS_ADMIN).get_json()["outcome"] == "already_cancelled"


def test_the_same_idempotency_key_names_a_different_job_per_tenant(clients):
    acme = post(clients["enqueue"], {"kind": "noop", "idempotencyKey": "weekly"}, ACME)
    globex = post(clients["enqueue"], {"kind": "noop", "idempotencyKey": "weekly"}, GLOBEX)
    again = post(clients["enqueue"], {"kind": "noop", "idempotencyKey": "weekly"}, ACME)
    assert (acme.status_code, globex.status_code, again.status_code) == (202, 202, 200)
    assert acme.get_json()["id"] != globex.get_json()["id"]
    assert again.get_json()["id"] == acme.get_json()["id"]


def test_a_job_id_stays_the_capability_for_its_own_status(clients):
    job_id = enqueue(clients, ACME)["id"]
    status = clients["status"]
    assert status.get(f"/?id={job_id}").status_code == 200  # no token needed
    assert status.get(f"/?id={job_id}", headers=GLOBEX).get_json()["id"] == job_id
    assert status.get(f"/?id={job_id}&stream=1", headers=GLOBEX).status_code == 200


def test_a_second_tenant_sees_none_of_the_firsts_jobs_anywhere(clients):
    """The issue's acceptance line: list, live list and cancel all come back empty-handed."""
    mine = {enqueue(clients, ACME)["id"] for _ in range(3)}
    status = clients["status"]
    assert not mine & {job["id"] for job in status.get("/?list=1", headers=GLOBEX).get_json()["jobs"]}
    snapshot = status.get("/?list=1&stream=1", headers=GLOBEX)
    first_events = b""
    for chunk in snapshot.response:
        first_events += chunk
        if b"event: snapshot" in first_events:
            break
    snapshot.close()
    assert b'"jobs":[]' in first_events
    assert all(post(clients["cancel"], {"id": job_id}, GLOBEX).status_code == 404 for job_id in mine)


def test_admin_token_is_read_as_the_reserved_tenant_and_may_not_repeat_a_token():
    from shared.core.errors import SettingsError  # noqa: PLC0415
    from shared.core.settings import ADMIN_TENANT, Settings  # noqa: PLC0415

    base = {"DATABASE_URL": "postgresql://localhost/jobs"}
    settings = Settings.from_env({**base, "API_TOKENS": "acme=t1", "ADMIN_TOKEN": "t9"})
    assert settings.api_tokens == (("acme", "t1"), (ADMIN_TENANT, "t9"))
    with pytest.raises(SettingsError, match="must not repeat a token"):
        Settings.from_env({**base, "API_TOKENS": "acme=t1", "ADMIN_TOKEN": "t1"})
    with pytest.raises(SettingsError, match="API_TOKENS entry"):
        Settings.from_env({**base, "API_TOKENS": "*=t1"})  # no tenant may take the admin's name


def test_the_admin_token_sees_the_whole_queues_figures_and_a_tenant_its_own(clients):
    status = clients["status"]
    assert status.get("/?view=metrics", headers=AS_ADMIN).get_json()["tenant"] is None
    assert status.get("/?view=metrics", headers=ACME).get_json()["tenant"] == "acme"
