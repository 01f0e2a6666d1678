"""Hostile callers, round two (issue 26, items 2 to 10): each test here failed on the code
before the fix it names. Functions are driven through functions-framework's test client,
the pool and the limiter against the test run's real PostgreSQL."""

from __future__ import annotations

import base64
import json
import time

import pytest

from shared.core import listing, queue
from shared.core.db import Pool
from shared.core.settings import Settings
from shared.core.storable import MAX_JSON_DEPTH
from tests.support import API_TOKEN, window_far_from_its_end

TOKENS = {"API_TOKEN": None, "API_TOKENS": "acme=acme-token-0123456789,globex=globex-token-0123456789"}
ACME = {"Authorization": "Bearer acme-token-0123456789"}
GLOBEX = {"Authorization": "Bearer globex-token-0123456789"}


@pytest.fixture
def client(make_client):
    """make_client with two tenants' tokens, counting rate limits in a window far from its end
    (a test that straddled one would see its counts start again)."""
    window = str(window_far_from_its_end())

    def make(name: str, **env: str):
        return make_client(name, **{**TOKENS, "RATE_LIMIT_WINDOW_SECONDS": window, **env})

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


# -- every list, live-list and metrics parameter: a 400 naming it (item 4) -------------------


def cursor_at(created_at: str) -> str:
    position = json.dumps([created_at, "00000000-0000-4000-8000-000000000000"]).encode()
    return base64.urlsafe_b64encode(position).decode().rstrip("=")


ADMIN = {"Authorization": "Bearer admin-token-0123456789"}
BAD_LIST_QUERIES = {
    "a Unicode digit as limit": ("limit=%C2%B2", "limit"),
    "createdAfter before the year 1 in UTC": ("createdAfter=0001-01-01T00:00:00%2B05:00", "createdAfter"),
    "createdBefore after the year 9999 in UTC": ("createdBefore=9999-12-31T23:59:59-05:00", "createdBefore"),
    "a cursor after the year 9999 in UTC": (f"cursor={cursor_at('9999-12-31T23:59:59-05:00')}", "cursor"),
    "a cursor before the year 1 in UTC": (f"cursor={cursor_at('0001-01-01T00:00:00+05:00')}", "cursor"),
    "NUL in kind": ("kind=%00", "kind"),
    "NUL in the admin's tenant": ("tenant=%00", "tenant"),
}


@pytest.mark.parametrize("stream", ["", "&stream=1"], ids=["list", "live list"])
@pytest.mark.parametrize("query, field", BAD_LIST_QUERIES.values(), ids=BAD_LIST_QUERIES.keys())
def test_a_bad_list_parameter_is_a_400_naming_it(client, query, field, stream):
    status = client("status", ADMIN_TOKEN="admin-token-0123456789")
    response = status.get(f"/?list=1&{query}{stream}", headers=ADMIN)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert fields(response) == [field]


@pytest.mark.parametrize("window", ["%C2%B2", "%D9%A1%D9%A2%D9%A0", "59", "604801", "9" * 30, "%00", ""])
def test_a_bad_metrics_window_is_a_400_naming_it(client, window):
    response = client("status").get(f"/?view=metrics&window={window}", headers=ACME)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert fields(response) == ["window"]


def test_the_edges_of_each_range_are_still_served(client):
    status = client("status")
    assert status.get("/?view=metrics&window=60", headers=ACME).status_code == 200
    assert status.get("/?view=metrics&window=604800", headers=ACME).status_code == 200
    edges = "limit=100&createdAfter=0001-01-01T00:00:00-05:00&createdBefore=9999-12-31T23:59:59Z"
    response = status.get(f"/?list=1&{edges}&cursor={cursor_at('9999-12-31T23:59:59+00:00')}", headers=ACME)
    assert response.status_code == 200, response.get_data(as_text=True)


# -- wrong tokens are limited per address; the dashboard's read is metered (item 6) ----------


def from_address(address: str, headers: dict | None = None) -> dict:
    return {"X-Forwarded-For": address, **(headers or {})}


def test_wrong_tokens_are_limited_per_address_and_then_even_the_right_one_waits(client):
    window = window_far_from_its_end()
    limits = {"RATE_LIMIT_AUTH_FAILURES": "5", "RATE_LIMIT_WINDOW_SECONDS": str(window)}
    cancel = client("cancel", **limits)
    job = {"generationId": "00000000-0000-4000-8000-000000000000"}
    guesser = "203.0.113.9"
    guesses = [
        post(cancel, job, from_address(guesser, {"Authorization": f"Bearer guess-{n}"})).status_code for n in range(8)
    ]
    assert guesses == [401] * 5 + [429] * 3
    refused = post(cancel, job, from_address(guesser, {"Authorization": "Bearer guess-9"}))
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= window
    # A guesser who finds the token learns nothing: that address waits for the window.
    assert post(cancel, job, from_address(guesser, ACME)).status_code == 429
    assert post(cancel, job, from_address("203.0.113.10", ACME)).status_code == 404  # another caller
    # Another instance shares the count: its first wrong guess from there is refused.
    other_instance = client("cancel", **limits)
    assert post(other_instance, job, from_address(guesser, {"Authorization": "Bearer x"})).status_code == 429
    # No token at all guesses nothing: it is the 401 it always was.
    assert post(cancel, job, from_address("203.0.113.11", {})).status_code == 401


def test_the_job_list_counts_wrong_tokens_too(client):
    status = client("status", RATE_LIMIT_AUTH_FAILURES="3")
    answers = [
        status.get("/?list=1", headers=from_address("198.51.100.4", {"Authorization": "Bearer no"})).status_code
        for _ in range(5)
    ]
    assert answers == [401, 401, 401, 429, 429]
    assert status.get("/?view=metrics", headers=from_address("198.51.100.4", GLOBEX)).status_code == 429
    assert status.get("/?list=1", headers=from_address("198.51.100.5", GLOBEX)).status_code == 200


def test_the_dashboards_database_read_is_metered_per_address(client):
    enqueue = client("enqueue", RATE_LIMIT_STATUS="2")
    answers = [enqueue.get("/", headers=from_address("192.0.2.77")).status_code for _ in range(4)]
    assert answers == [200, 200, 429, 429]
    assert enqueue.get("/", headers=from_address("192.0.2.78")).status_code == 200


# -- IPv6 callers by /48 (item 7) -------------------------------------------------------------


def test_ipv6_callers_are_told_apart_by_their_48_unless_set_otherwise(client):
    job_id = post(client("enqueue"), {"kind": "noop"}).get_json()["id"]
    status = client("status", RATE_LIMIT_STATUS="3")

    def get(address: str, app=status) -> int:
        return app.get(f"/?id={job_id}", headers=from_address(address)).status_code

    # Four /64s of one /48 (an allocation one site gets) are one caller.
    assert [get(f"2001:db8:7:{n:x}::1") for n in range(1, 6)] == [200, 200, 200, 429, 429]
    assert get("2001:db8:8::1") == 200  # the next /48
    per_64 = client("status", RATE_LIMIT_STATUS="3", RATE_LIMIT_IPV6_PREFIX="64")
    assert [get(f"2001:db8:9:{n:x}::1", per_64) for n in range(1, 6)] == [200] * 5


@pytest.mark.parametrize("prefix", ["129", "8", "x"])
def test_an_impossible_ipv6_prefix_is_refused_at_start(prefix):
    from shared.core.errors import SettingsError  # noqa: PLC0415

    with pytest.raises(SettingsError, match="RATE_LIMIT_IPV6_PREFIX"):
        Settings.from_env({"DATABASE_URL": "postgresql://h/db", "RATE_LIMIT_IPV6_PREFIX": prefix})


# -- a cap on each caller's open streams (item 3) ---------------------------------------------


def test_one_address_cannot_hold_every_stream_slot(client):
    job_id = post(client("enqueue"), {"kind": "noop"}).get_json()["id"]  # queued: its stream stays open
    status = client("status", THREADS="8", MAX_OPEN_STREAMS="4", MAX_STREAMS_PER_CALLER="2", RATE_LIMIT_STREAMS="0")

    def open_from(address: str):
        return status.get(f"/?id={job_id}&stream=1", headers=from_address(address))

    hog = [open_from("203.0.113.50") for _ in range(2)]
    assert [stream.status_code for stream in hog] == [200, 200]
    refused = open_from("203.0.113.50")
    assert refused.status_code == 429 and refused.get_json()["error"]["code"] == "too_many_streams"
    assert "as many as one caller may" in refused.get_json()["error"]["message"] and refused.headers["Retry-After"]
    others = [open_from("203.0.113.51"), open_from("203.0.113.52")]  # the slots the hog could not take
    assert [stream.status_code for stream in others] == [200, 200]
    full = open_from("203.0.113.53")
    assert full.status_code == 429 and "as many as one caller may" not in full.get_json()["error"]["message"]
    hog[0].close()  # a freed slot goes to whoever asks next
    again = open_from("203.0.113.53")
    assert again.status_code == 200
    for stream in [hog[1], *others, again]:
        stream.close()
    assert [open_from("203.0.113.50").status_code for _ in range(2)] == [200, 200]


def test_one_tenant_cannot_hold_every_live_list(client):
    status = client("status", THREADS="8", MAX_OPEN_STREAMS="4", MAX_STREAMS_PER_CALLER="2", RATE_LIMIT_STREAMS="0")

    def live_list(headers: dict, address: str):
        return status.get("/?list=1&stream=1", headers=from_address(address, headers))

    # A tenant's live lists count together, from whatever address they are opened.
    acme = [live_list(ACME, "192.0.2.1"), live_list(ACME, "192.0.2.2")]
    assert [stream.status_code for stream in acme] == [200, 200]
    assert live_list(ACME, "192.0.2.3").status_code == 429
    globex = live_list(GLOBEX, "192.0.2.1")
    assert globex.status_code == 200
    for stream in [*acme, globex]:
        stream.close()
    assert live_list(ACME, "192.0.2.3").status_code == 200


@pytest.mark.parametrize(
    "env, expected",
    [({"THREADS": "84", "MAX_OPEN_STREAMS": "80"}, 8), ({"THREADS": "8", "MAX_OPEN_STREAMS": "3"}, 3)],
)
def test_the_per_caller_cap_defaults_to_eight_within_the_instances_streams(env, expected):
    assert Settings.from_env({"DATABASE_URL": "postgresql://h/db", **env}).max_streams_per_caller == expected


def test_a_per_caller_cap_above_the_instances_is_refused_at_start():
    from shared.core.errors import SettingsError  # noqa: PLC0415

    env = {"DATABASE_URL": "postgresql://h/db", "THREADS": "8", "MAX_OPEN_STREAMS": "4", "MAX_STREAMS_PER_CALLER": "5"}
    with pytest.raises(SettingsError, match=r"MAX_STREAMS_PER_CALLER \(5\) must be at most MAX_OPEN_STREAMS \(4\)"):
        Settings.from_env(env)


# -- callback URLs are normalised before every check (item 5) ---------------------------------

# Spellings the send-time resolver reaches as an internal name or address, which the
# enqueue-time check used to let through.
RESPELLED_CALLBACKS = [
    "https://metadata.google.internal./computeMetadata/v1/",  # a fully qualified name's final dot
    "https://METADATA.GOOGLE.INTERNAL./",
    "https://foo.localhost./",
    "https://printer.local./",
    "https://localhost./",
    "https://\uff4d\uff45\uff54\uff41\uff44\uff41\uff54\uff41.google.internal/",  # full-width letters
    "https://\uff11\uff12\uff17.\uff10.\uff10.\uff11/",  # full-width digits: 127.0.0.1
    "https://\uff11\uff16\uff19.\uff12\uff15\uff14.\uff11\uff16\uff19.\uff12\uff15\uff14/",  # 169.254.169.254
    "https://127\u30020\u30020\u30021/",  # ideographic full stops
    "https://\uff10x7f000001/",
    "https://169.254.169.254./",
    "https://hooks.example.com:0/",  # port 0
    "https://hooks..example.com/",  # no resolver takes an empty label
]


@pytest.mark.parametrize("url", RESPELLED_CALLBACKS)
def test_every_spelling_of_an_internal_callback_is_refused_at_enqueue(client, url):
    response = post(client("enqueue"), {"kind": "noop", "callbackUrl": url})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert fields(response) == ["callbackUrl"]


@pytest.mark.parametrize("url", RESPELLED_CALLBACKS)
def test_the_sender_refuses_them_before_any_lookup_or_connection(url, monkeypatch):
    from shared.core import netguard  # noqa: PLC0415
    from tests import netspy  # noqa: PLC0415

    looked_up = []

    def resolver(*args, **kwargs):
        looked_up.append(args[0])
        return []

    with netspy.connects() as seen, pytest.raises(netguard.Refused):
        netguard.request_status("POST", url, b"{}", {}, netguard.CALLBACKS, timeout=2, resolver=resolver)
    assert looked_up == [] and seen == []


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com./x", "https://b\u00fccher.example/hook", "https://HOOKS.example.com:8443/"]
)
def test_public_spellings_are_still_accepted(client, url):
    assert post(client("enqueue"), {"kind": "noop", "callbackUrl": url}).status_code == 202


def test_a_callback_to_our_own_function_is_refused_in_any_spelling(client):
    enqueue = client("enqueue", STATUS_URL="https://status.example.com/")
    for url in ("https://status.example.com./", "https://STATUS.example.com/", "https://status.example.com:443/"):
        response = post(enqueue, {"kind": "noop", "callbackUrl": url})
        assert response.status_code == 400 and "own functions" in response.get_data(as_text=True), url


# -- webhook signatures name the recipient; a secret per tenant (item 9) ----------------------


class SignatureRecorder:
    """A loopback receiver that keeps each delivery's signature header and body."""

    def __init__(self):
        import threading  # noqa: PLC0415
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: PLC0415

        from shared.core.webhooks import SIGNATURE_HEADER  # noqa: PLC0415

        self.received: list[tuple[str, bytes]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.headers.get(SIGNATURE_HEADER, ""), body))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook/acme"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    receiver = SignatureRecorder()
    yield receiver
    receiver.close()


def webhook_settings(env: dict, **extra: str) -> Settings:
    return Settings.from_env({**env, "CALLBACK_ALLOW_LOOPBACK": "1", **extra})


def delivered_job(tenant: str):
    from shared.core.jobs import Job  # noqa: PLC0415

    row = {"id": "00000000-0000-4000-8000-000000000001", "job_status": "completed", "payload": {}, "tenant": tenant}
    return Job.from_row(row)


def send(settings: Settings, url: str, tenant: str) -> None:
    from shared.core.dispatch import Dispatcher  # noqa: PLC0415
    from shared.core.outbox import Delivery  # noqa: PLC0415

    delivery = Delivery(1, "00000000-0000-4000-8000-000000000001", "job.completed", url, 0, "claim")
    assert Dispatcher(settings).send_webhook(delivery, delivered_job(tenant), seconds=5) is None


def test_the_v2_signature_names_the_destination_and_v1_still_verifies(env, recorder):
    from shared.core.webhooks import verify_signature  # noqa: PLC0415

    send(webhook_settings(env, WEBHOOK_SECRET="shared-secret"), recorder.url, "acme")
    [(header, body)] = recorder.received
    assert verify_signature("shared-secret", header, body)  # v1: existing verifiers keep working
    assert verify_signature("shared-secret", header, body, url=recorder.url)
    # Replayed to another receiver of the same secret, within the tolerance: v2 tells.
    assert not verify_signature("shared-secret", header, body, url=recorder.url.replace("acme", "globex"))
    assert not verify_signature("shared-secret", header.split(",v2=")[0], body, url=recorder.url)  # v1 alone


def test_a_tenant_with_a_secret_of_its_own_is_signed_with_it(env, recorder):
    from shared.core.webhooks import verify_signature  # noqa: PLC0415

    settings = webhook_settings(env, WEBHOOK_SECRET="shared-secret", WEBHOOK_SECRETS="acme=acme-secret")
    send(settings, recorder.url, "acme")
    send(settings, recorder.url, "globex")
    [(acme_header, acme_body), (globex_header, globex_body)] = recorder.received
    assert verify_signature("acme-secret", acme_header, acme_body, url=recorder.url)
    assert not verify_signature("shared-secret", acme_header, acme_body)  # not even v1
    assert verify_signature("shared-secret", globex_header, globex_body, url=recorder.url)
    assert not verify_signature("acme-secret", globex_header, globex_body)


@pytest.mark.parametrize("value", ["acme", "acme=", "a b=s3cr3t", "acme=s3cr3t-1,acme=s3cr3t-2"])
def test_a_malformed_secret_list_is_refused_at_start_without_showing_a_secret(value):
    from shared.core.errors import SettingsError  # noqa: PLC0415

    with pytest.raises(SettingsError, match="WEBHOOK_SECRETS") as refused:
        Settings.from_env({"DATABASE_URL": "postgresql://h/db", "WEBHOOK_SECRETS": value})
    assert "s3cr3t" not in str(refused.value)


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/a\nb", "https://hooks.example.com/a b", "https://h.example/\t"]
)
def test_a_callback_url_with_spaces_or_control_characters_is_refused(client, url):
    response = post(client("enqueue"), {"kind": "noop", "callbackUrl": url})
    assert response.status_code == 400 and fields(response) == ["callbackUrl"]


# -- a kind that declares its fields refuses others (item 10) ---------------------------------


@pytest.fixture
def source_id(session) -> int:
    from shared.kinds.newsletter.sources import add_source  # noqa: PLC0415

    return add_source(session, "Engineering blog", "https://feeds.example.com/engineering.xml").id


def newsletter(source_id: int, **extra) -> dict:
    return {
        "dateRange": {"from": "2025-01-01", "to": "2025-01-07"},
        "selectedSources": [source_id],
        "outputFormat": "markdown",
        **extra,
    }


def test_the_seeds_newsletter_request_is_still_accepted(client, source_id):
    assert post(client("enqueue"), newsletter(source_id)).status_code == 202  # the seed's body, no kind
    with_options = newsletter(source_id, kind="newsletter", priority=1, idempotencyKey="weekly")
    assert post(client("enqueue"), with_options).status_code == 202


def test_an_unknown_newsletter_field_is_refused_naming_it(client, source_id, pool):
    enqueue = client("enqueue")
    stuffed = newsletter(source_id, padding="x" * 62_000, note="hi")
    response = post(enqueue, stuffed)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert sorted(fields(response)) == ["note", "padding"]
    assert "dateRange, selectedSources, outputFormat" in response.get_json()["error"]["message"]
    nested = newsletter(source_id)
    nested["dateRange"]["extra"] = "x" * 1000
    response = post(enqueue, nested)
    assert response.status_code == 400 and fields(response) == ["dateRange.extra"]
    with pool.session() as session:
        assert session.run_sql("SELECT count(*) FROM jobs")[0][0] == 0  # nothing was stored


def test_kinds_that_declare_no_fields_take_any(client):
    assert post(client("enqueue"), {"kind": "noop", "anything": {"at": "all"}}).status_code == 202


def test_thousands_of_unknown_fields_are_named_twenty_at_most(client, source_id):
    stuffed = newsletter(source_id, **{f"f{n}": n for n in range(3000)})
    response = post(client("enqueue"), stuffed)
    assert response.status_code == 400 and len(fields(response)) == 20


# -- slow request lines do not hold the threads (item 8) --------------------------------------


@pytest.fixture
def launched(function_env, tmp_path):
    """launched(name) -> a function under the local launcher: two threads, a one-second read timeout."""
    import os  # noqa: PLC0415

    from local.launcher import start_function  # noqa: PLC0415

    servers = []

    def launch(name: str):
        env = {**os.environ, **function_env, "THREADS": "2", "REQUEST_READ_TIMEOUT_SECONDS": "1"}
        with open(tmp_path / f"{name}.log", "wb") as output:
            servers.append(start_function(name, env, output=output))
        return servers[-1].wait_until_serving()

    yield launch
    for server in servers:
        server.stop()


@pytest.fixture
def slow_status_server(launched):
    return launched("status")


def test_half_sent_request_lines_do_not_hold_the_threads(slow_status_server):
    import socket  # noqa: PLC0415

    import httpx  # noqa: PLC0415

    slow = []
    for _ in range(6):  # three times the threads
        sock = socket.create_connection(("127.0.0.1", slow_status_server.port), timeout=20)
        sock.sendall(b"GET /?id=00000000-0000-4000-8000-0000")  # and nothing more
        slow.append(sock)
    answer = httpx.get(slow_status_server.url, params={"id": "00000000-0000-4000-8000-000000000000"}, timeout=15)
    assert answer.status_code == 404  # served, though every thread was offered a half-sent line
    deadline = time.monotonic() + 15
    for sock in slow:  # each is cut off, and told nothing
        assert sock.recv(1024) == b"" and time.monotonic() < deadline
        sock.close()


def test_a_body_that_stops_arriving_is_a_408(launched):
    import socket  # noqa: PLC0415

    cancel = launched("cancel")
    with socket.create_connection(("127.0.0.1", cancel.port), timeout=20) as sock:
        head = "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 200\r\n"
        sock.sendall(f'{head}Authorization: Bearer {API_TOKEN}\r\n\r\n{{"generationId": '.encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer
