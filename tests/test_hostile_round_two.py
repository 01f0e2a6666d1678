"""Hostile callers, round two (issue 26, items 2 to 10): each test here failed on the code
before the fix it names. Functions are driven through functions-framework's test client,
the pool and the limiter against the test run's real PostgreSQL."""

from __future__ import annotations

import json

import pytest

from shared.core import listing, queue
from shared.core.db import Pool
from shared.core.settings import Settings
from shared.core.storable import MAX_JSON_DEPTH

TOKENS = {"API_TOKEN": None, "API_TOKENS": "acme=acme-token-0123456789,globex=globex-token-0123456789"}
ACME = {"Authorization": "Bearer acme-token-0123456789"}
GLOBEX = {"Authorization": "Bearer globex-token-0123456789"}


@pytest.fixture
def client(make_client):
    """make_client with two tenants' tokens."""

    def make(name: str, **env: str):
        return make_client(name, **{**TOKENS, **env})

    return make


def post(client, body, headers=ACME):
    return client.post("/", data=json.dumps(body), content_type="application/json", headers=headers)


def fields(response) -> list[str]:
    return [detail["field"] for detail in response.get_json()["error"].get("details", [])]


def nested(levels: int) -> str:
    """JSON text of `levels` arrays, one inside the other."""
    return "[" * levels + "]" * levels


# -- a failure mid-reply leaves no pooled connection out of step (item 2) --------------------


@pytest.fixture(params=["none", "transaction"])
def one_connection(request, env):
    """A pool of one connection (every statement on the same one, unless it is discarded),
    directly connected or as through a transaction pooler."""
    extra = {"DB_POOLER": "transaction", "DATABASE_DIRECT_URL": env["DATABASE_URL"]}
    pool = Pool(Settings.from_env({**env, "DB_POOL_SIZE": "1", **(extra if request.param != "none" else {})}))
    yield pool
    pool.close()


def test_a_failure_while_a_reply_is_read_discards_the_connection(one_connection, registry):
    pool = one_connection
    with pool.session() as session:
        acme, _ = queue.enqueue(session, registry, kind="noop", payload={}, tenant="acme")
        globex, _ = queue.enqueue(session, registry, kind="noop", payload={"n": 1}, tenant="globex")
        # Planted past the edge's check: JSON the driver cannot read back (its parser recurses).
        session.run_sql(
            "UPDATE jobs SET payload = CAST(:deep AS jsonb) WHERE id = :id",
            deep=f'{{"deep": {nested(5000)}}}',
            id=acme.id,
        )
    opened = pool.opened
    with pytest.raises(RecursionError), pool.session() as session:
        queue.get_job(session, acme.id)  # the row arrives; reading it fails, the rest of the reply unread
    with pool.session() as session:
        assert queue.get_job(session, globex.id).id == globex.id
        page = listing.list_jobs(session, listing.JobFilter(tenant="globex"))
        assert [job.id for job in page.jobs] == [globex.id]  # globex's jobs, and only them
        third, created = queue.enqueue(session, registry, kind="noop", payload={"n": 3}, tenant="globex")
        assert created and queue.get_job(session, third.id).payload == {"n": 3}
    assert pool.opened == opened + 1  # the failed connection was closed, a new one opened


# -- the edge refuses deep JSON (item 2) ----------------------------------------------------


def test_json_nested_past_the_limit_is_a_400_naming_the_field(client):
    enqueue = client("enqueue")
    at_limit = f'{{"kind": "noop", "deep": {nested(MAX_JSON_DEPTH - 1)}}}'
    assert enqueue.post("/", data=at_limit, content_type="application/json", headers=ACME).status_code == 202
    past = f'{{"kind": "noop", "deep": {nested(MAX_JSON_DEPTH)}}}'
    response = enqueue.post("/", data=past, content_type="application/json", headers=ACME)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert fields(response) == ["deep" + "[0]" * (MAX_JSON_DEPTH - 1)]
    assert f"deeper than {MAX_JSON_DEPTH} levels" in response.get_json()["error"]["message"]
    # What pg8000 could not read back (about 970), and what Python's own parser cannot read:
    # named by their path when the parser reads them, else as the body.
    for levels in (970, 30_000):  # 60 KB: under the body limit
        body = f'{{"kind": "noop", "deep": {nested(levels)}}}'
        response = enqueue.post("/", data=body, content_type="application/json", headers=ACME)
        assert response.status_code == 400, response.get_data(as_text=True)
        assert fields(response)[0].startswith(("deep[0]", "body")) and len(fields(response)) == 1
        assert f"deeper than {MAX_JSON_DEPTH} levels" in response.get_json()["error"]["message"]


def test_deep_json_is_refused_by_every_body_reading_function(client):
    body = f'{{"generationId": "00000000-0000-4000-8000-000000000000", "x": {nested(200)}}}'
    response = client("cancel").post("/", data=body, content_type="application/json", headers=ACME)
    assert response.status_code == 400 and fields(response)[0].startswith("x[0]")
