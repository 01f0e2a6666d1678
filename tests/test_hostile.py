"""Hostile callers get nowhere (issue 15): each test here failed on the code before the fix
it names. Every function is driven through functions-framework's test client."""

import json
import re

import pytest

from shared.core.webhooks import webhook_body

TOKEN = "hostile-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(make_client):
    """make_client with this file's token."""

    def make(name: str, **env: str):
        return make_client(name, **{"API_TOKEN": TOKEN, **env})

    return make


def post(client, body, headers=AUTH):
    return client.post("/", data=json.dumps(body), content_type="application/json", headers=headers)


def fields(response) -> list[str]:
    return [detail["field"] for detail in response.get_json()["error"].get("details", [])]


# -- a crafted path and the status page's script (item 7) -----------------------------------


def test_a_crafted_path_cannot_break_the_status_pages_script(client):
    job = post(client("enqueue"), {"kind": "noop"}).get_json()
    page = client("status").get(f"/%3C!--%3Cscript%3E?id={job['id']}", headers={"Accept": "text/html"})
    assert page.status_code == 200
    config = re.search(r"const CONFIG = (.*);\n", page.get_data(as_text=True)).group(1)
    # "<!--<script>" inside a script element makes the parser swallow its real end tag.
    assert "<" not in config and ">" not in config
    assert json.loads(config)["streamPath"] == "/<!--<script>"  # the same text, escaped for a script


# -- information exposure (item 8) ----------------------------------------------------------


def test_the_callback_url_is_not_shown_to_anyone_who_holds_the_job_id(client, pool):
    secret_url = "https://hooks.example/receive?secret=abc123"
    enqueued = post(client("enqueue"), {"kind": "noop", "callbackUrl": secret_url})
    assert enqueued.status_code == 202
    job_id = enqueued.get_json()["id"]
    status = client("status")
    assert "abc123" not in status.get(f"/?id={job_id}").get_data(as_text=True)
    stream = status.get(f"/?id={job_id}&stream=1")
    first_chunks = b"".join(next(iter(stream.response)) for _ in range(2))
    stream.close()
    assert b"snapshot" in first_chunks and b"abc123" not in first_chunks
    assert "abc123" not in enqueued.get_data(as_text=True)
    from shared.core import queue  # noqa: PLC0415

    with pool.session() as session:
        job = queue.get_job(session, job_id)
    assert job.callback_url == secret_url  # kept, for the webhook, but never shown
    assert b"abc123" not in webhook_body(job)


def test_an_unknown_kind_is_refused_without_listing_the_kinds_there_are(client):
    response = post(client("enqueue"), {"kind": "no-such-kind"})
    assert response.status_code == 400 and fields(response) == ["kind"]
    text = response.get_data(as_text=True)
    assert "no-such-kind" in text
    for registered in ("newsletter", "demo", "wait_for_cancel", "fail_until"):
        assert registered not in text


# -- inputs that ended in a 500 (item 6) ----------------------------------------------------

# Raw JSON texts: Python's json reads each of these; PostgreSQL stores none of them.
UNSTORABLE_BODIES = {
    "runAt before the year 1 in UTC": ('{"kind": "noop", "runAt": "0001-01-01T00:00:00+05:00"}', "runAt"),
    "runAt after the year 9999 in UTC": ('{"kind": "noop", "runAt": "9999-12-31T23:59:59-05:00"}', "runAt"),
    "NUL in a payload value": ('{"kind": "noop", "note": "a\\u0000b"}', "note"),
    "NUL in a nested payload key": ('{"kind": "noop", "meta": {"k\\u0000": 1}}', "meta.k\ufffd"),
    "lone surrogate in a payload value": ('{"kind": "noop", "list": ["ok", "\\ud800"]}', "list[1]"),
    "NaN in the payload": ('{"kind": "noop", "ratio": NaN}', "ratio"),
    "Infinity in the payload": ('{"kind": "noop", "deep": {"x": [-Infinity]}}', "deep.x[0]"),
    "NUL in the idempotency key": ('{"kind": "noop", "idempotencyKey": "k\\u0000"}', "idempotencyKey"),
    "lone surrogate in the idempotency key": ('{"kind": "noop", "idempotencyKey": "\\udfff"}', "idempotencyKey"),
    "NUL in the callback URL": ('{"kind": "noop", "callbackUrl": "https://a\\u0000b/"}', "callbackUrl"),
}


@pytest.mark.parametrize("body, field", UNSTORABLE_BODIES.values(), ids=UNSTORABLE_BODIES.keys())
def test_what_the_database_cannot_store_is_a_400_naming_the_field(client, body, field):
    response = client("enqueue").post("/", data=body, content_type="application/json", headers=AUTH)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert field in fields(response)


def test_a_time_at_the_edge_of_the_range_is_still_accepted(client):
    response = post(client("enqueue"), {"kind": "noop", "runAt": "0001-01-01T00:00:00-05:00"})
    assert response.status_code == 202 and response.get_json()["runAt"] == "0001-01-01T05:00:00.000Z"


@pytest.mark.parametrize(
    "query, headers, field",
    [
        ("&lastEventId=%C2%B2", {}, "lastEventId"),  # "²": isdigit() says yes, int() says no
        ("", {"Last-Event-ID": "\u00b2"}, "Last-Event-ID"),
        ("", {"Last-Event-ID": "9223372036854775808"}, "Last-Event-ID"),  # one past the bigint
        ("&lastEventId=99999999999999999999999", {}, "lastEventId"),
    ],
)
def test_a_resume_point_that_is_not_a_bigint_is_a_400(client, query, headers, field):
    job = post(client("enqueue"), {"kind": "noop"}).get_json()
    response = client("status").get(f"/?id={job['id']}&stream=1{query}", headers=headers)
    assert response.status_code == 400 and fields(response) == [field]


def test_the_largest_resume_point_is_served(client):
    job = post(client("enqueue"), {"kind": "noop"}).get_json()
    stream = client("status").get(f"/?id={job['id']}&stream=1", headers={"Last-Event-ID": str(2**63 - 1)})
    assert stream.status_code == 200 and next(iter(stream.response)).startswith(b"retry: ")
    stream.close()
