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
