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
    html = page.get_data(as_text=True)
    assert "<!--<script>" not in html and "\\u003c!--" not in html  # and now the path is not echoed at all


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


# -- enqueue fails closed; the kinds a caller may enqueue (item 2) --------------------------


def start_log(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def test_without_a_token_enqueue_refuses_everyone_and_says_so_at_start(client, capsys):
    capsys.readouterr()
    closed = client("enqueue", API_TOKEN=None)
    messages = [entry["message"] for entry in start_log(capsys)]
    assert any("enqueue refuses every request" in message for message in messages), messages
    response = closed.post("/", data='{"kind": "noop"}', content_type="application/json")
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "unauthorized"
    assert closed.post("/", data='{"kind": "noop"}', content_type="application/json", headers=AUTH).status_code == 401


def test_anonymous_enqueue_is_an_explicit_setting_and_says_so_at_start(client, capsys):
    capsys.readouterr()
    opened = client("enqueue", API_TOKEN=None, ALLOW_ANONYMOUS_ENQUEUE="1")
    entries = start_log(capsys)
    assert any(e["severity"] == "WARNING" and "open to anyone" in e["message"] for e in entries), entries
    assert opened.post("/", data='{"kind": "noop"}', content_type="application/json").status_code == 202
    # With a token configured, the setting opens nothing.
    guarded = client("enqueue", ALLOW_ANONYMOUS_ENQUEUE="1")
    assert guarded.post("/", data='{"kind": "noop"}', content_type="application/json").status_code == 401


def test_the_demo_kind_is_enqueued_only_when_listed(client):
    refused = post(client("enqueue"), {"kind": "demo", "steps": 1})
    assert refused.status_code == 400 and fields(refused) == ["kind"]
    assert post(client("enqueue"), {"kind": "noop"}).status_code == 202  # JOB_HANDLERS kinds are in by default
    listed = client("enqueue", ENQUEUE_KINDS="demo, noop")
    assert post(listed, {"kind": "demo", "steps": 1}).status_code == 202
    assert post(listed, {"kind": "count"}).status_code == 400  # registered, but not listed
    assert post(client("enqueue", ENQUEUE_KINDS="*"), {"kind": "demo", "steps": 1}).status_code == 202


@pytest.mark.parametrize("kinds", ["*,demo", " , ", "demo,*"])
def test_a_malformed_kind_list_is_refused_at_start(kinds):
    from shared.core.errors import SettingsError  # noqa: PLC0415
    from shared.core.settings import Settings  # noqa: PLC0415

    with pytest.raises(SettingsError, match="ENQUEUE_KINDS must list kinds"):
        Settings.from_env({"DATABASE_URL": "postgresql://h/db", "ENQUEUE_KINDS": kinds})


def test_a_kind_list_naming_a_kind_with_no_handler_stops_enqueue_at_start(client):
    from shared.core.errors import SettingsError  # noqa: PLC0415

    with pytest.raises(SettingsError, match="ENQUEUE_KINDS names kinds with no handler: demmo"):
        client("enqueue", ENQUEUE_KINDS="newsletter,demmo")


# -- idempotency keys: the same request, or a 409 naming what differs (item 3) ---------------


def test_a_repeated_key_with_the_same_request_gets_the_job_and_a_different_one_a_409(client):
    enqueue = client("enqueue")
    body = {"kind": "noop", "idempotencyKey": "newsletter-2025-01-07", "topic": "weekly", "priority": 2}
    first = post(enqueue, body)
    assert first.status_code == 202
    again = post(enqueue, dict(reversed(body.items())))  # the same request, fields in another order
    assert again.status_code == 200 and again.get_json()["id"] == first.get_json()["id"]
    for change, named in [
        ({"kind": "count"}, ["kind"]),  # the squatting case: another kind under the same key
        ({"topic": "daily"}, ["topic"]),
        ({"extra": 1}, ["extra"]),
        ({"priority": 3}, ["priority"]),
        ({"maxAttempts": 1}, ["maxAttempts"]),
        ({"runAt": "2030-01-01T00:00:00Z"}, ["runAt"]),
        ({"callbackUrl": "https://hooks.example/x"}, ["callbackUrl"]),
        ({"kind": "count", "priority": 0}, ["kind", "priority"]),
    ]:
        response = post(enqueue, {**body, **change})
        assert response.status_code == 409, change
        error = response.get_json()["error"]
        assert error["code"] == "idempotency_key_reused" and sorted(fields(response)) == named, error


def test_a_repeated_key_with_a_run_at_matches_only_that_run_at(client):
    enqueue = client("enqueue")
    timed = {"kind": "noop", "idempotencyKey": "timed", "runAt": "2030-01-01T09:00:00+02:00"}
    first = post(enqueue, timed)
    assert post(enqueue, {**timed, "runAt": "2030-01-01T07:00:00Z"}).get_json()["id"] == first.get_json()["id"]
    assert post(enqueue, {"kind": "noop", "idempotencyKey": "timed"}).status_code == 409  # now, not 2030


def test_keys_are_still_the_callers_own(client):
    tokens = {"API_TOKEN": None, "API_TOKENS": "acme=acme-token-123,globex=globex-token-456"}
    enqueue = client("enqueue", **tokens)
    acme = post(enqueue, {"kind": "noop", "idempotencyKey": "k"}, {"Authorization": "Bearer acme-token-123"})
    globex = post(enqueue, {"kind": "count", "idempotencyKey": "k"}, {"Authorization": "Bearer globex-token-456"})
    assert acme.status_code == globex.status_code == 202 and acme.get_json()["id"] != globex.get_json()["id"]


# -- status threads cannot be exhausted (item 5) ----------------------------------------------


def test_more_streams_than_threads_is_refused_at_start_in_one_message(client):
    from shared.core.errors import SettingsError  # noqa: PLC0415
    from shared.core.settings import Settings  # noqa: PLC0415

    with pytest.raises(SettingsError, match=r"MAX_OPEN_STREAMS \(100\) must be below THREADS \(32\)"):
        client("status", THREADS="32", MAX_OPEN_STREAMS="100")
    with pytest.raises(SettingsError, match=r"MAX_OPEN_STREAMS \(32\) must be below THREADS \(32\)"):
        Settings.from_env({"DATABASE_URL": "postgresql://h/db", "THREADS": "32", "MAX_OPEN_STREAMS": "32"})
    assert Settings.from_env({"DATABASE_URL": "postgresql://h/db", "THREADS": "32"}).max_open_streams == 26
    assert Settings.from_env({"DATABASE_URL": "postgresql://h/db", "THREADS": "84", "MAX_OPEN_STREAMS": "80"})


@pytest.fixture
def status_server(function_env, tmp_path):
    """The status function under functions-framework's own server (gunicorn), one stream
    allowed, and keep-alives far apart: a dropped stream is noticed only by its socket."""
    import os  # noqa: PLC0415

    from local.launcher import start_function  # noqa: PLC0415

    env = {
        **os.environ,
        **function_env,
        "THREADS": "4",
        "API_TOKEN": TOKEN,
        "MAX_OPEN_STREAMS": "1",
        "STREAM_KEEPALIVE_SECONDS": "30",
        "STREAM_MAX_SECONDS": "60",
    }
    with open(tmp_path / "status.log", "wb") as output:
        # The one launcher: the server ends with the test run however the run ends.
        server = start_function("status", env, output=output)
        try:
            yield server.wait_until_serving().url
        finally:
            server.stop()


@pytest.mark.parametrize("stream", ["job", "list"])
def test_a_dropped_stream_gives_back_its_slot_long_before_the_next_keep_alive(client, status_server, stream):
    """A job's stream (public, by address) and a live list (by tenant) alike: one loop runs both."""
    import socket  # noqa: PLC0415
    import time  # noqa: PLC0415
    from urllib.parse import urlsplit  # noqa: PLC0415

    import httpx  # noqa: PLC0415

    job_id = post(client("enqueue"), {"kind": "noop"}).get_json()["id"]  # queued: its stream stays open
    query = f"id={job_id}&stream=1" if stream == "job" else "list=1&stream=1"
    port = urlsplit(status_server).port
    dropped = socket.create_connection(("127.0.0.1", port), timeout=10)
    request = f"GET /?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    dropped.sendall(request.encode())
    received = b""
    while b"event: snapshot" not in received:
        received += dropped.recv(4096)
    assert httpx.get(f"{status_server}?{query}", headers=AUTH, timeout=10).status_code == 429
    dropped.close()
    closed_at = time.monotonic()
    deadline = closed_at + 10  # the keep-alive is 30 s away; the old code freed the slot only then
    while True:
        with httpx.stream("GET", f"{status_server}?{query}", headers=AUTH, timeout=10) as again:
            if again.status_code == 200:
                break
            assert again.status_code == 429
        assert time.monotonic() < deadline, "the dropped stream still holds its slot"
        time.sleep(0.1)
    assert httpx.get(status_server, params={"id": job_id}, timeout=10).status_code == 200
