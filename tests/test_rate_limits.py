"""Rate limits per caller (issue 15, item 10): enqueue and cancel per tenant, status reads
and stream opens per client address; 429 with Retry-After; counted in the database, so
that every instance shares them.

Every test here counts in a window far from its end (tests.support.window_far_from_its_end):
with the 60 s default, a test that straddled a window's end saw its count start again, and
"a flood from one token" failed once that way on a loaded machine."""

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from shared.core.errors import RateLimited
from shared.core.ratelimit import RateLimiter
from tests.support import window_far_from_its_end
from tests.test_openapi import check

TOKENS = {"API_TOKEN": None, "API_TOKENS": "acme=acme-token-0123,globex=globex-token-4567"}
ACME = {"Authorization": "Bearer acme-token-0123"}
GLOBEX = {"Authorization": "Bearer globex-token-4567"}


@pytest.fixture(autouse=True)
def window(monkeypatch) -> int:
    """The window every function in these tests counts in (make_client keeps what is set here)."""
    seconds = window_far_from_its_end()
    monkeypatch.setenv("RATE_LIMIT_WINDOW_SECONDS", str(seconds))
    return seconds


def post(client, body, headers):
    return client.post("/", data=json.dumps(body), content_type="application/json", headers=headers)


def test_a_flood_from_one_token_leaves_another_tokens_enqueues_untouched(make_client, window):
    enqueue = make_client("enqueue", RATE_LIMIT_ENQUEUE="5", **TOKENS)
    flood = [post(enqueue, {"kind": "noop"}, ACME) for _ in range(12)]
    assert [r.status_code for r in flood] == [202] * 5 + [429] * 7
    refused = flood[-1]
    check("/enqueue", "post", refused)
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert 600 <= int(refused.headers["Retry-After"]) <= window  # the time left in the window
    assert [post(enqueue, {"kind": "noop"}, GLOBEX).status_code for _ in range(5)] == [202] * 5


def test_a_flood_of_cancels_from_one_token_leaves_another_tokens_untouched(make_client):
    enqueue = make_client("enqueue", **TOKENS)
    jobs = [post(enqueue, {"kind": "noop"}, ACME).get_json()["id"] for _ in range(4)]
    cancel = make_client("cancel", RATE_LIMIT_CANCEL="2", **TOKENS)
    answers = [post(cancel, {"generationId": job_id}, ACME).status_code for job_id in jobs]
    assert answers == [200, 200, 429, 429]
    check("/cancel", "post", post(cancel, {"generationId": jobs[0]}, ACME))
    theirs = [post(enqueue, {"kind": "noop"}, GLOBEX).get_json()["id"] for _ in range(2)]
    assert [post(cancel, {"generationId": job_id}, GLOBEX).status_code for job_id in theirs] == [200, 200]


def test_instances_share_the_count(make_client):
    first, second = (make_client("enqueue", RATE_LIMIT_ENQUEUE="4", **TOKENS) for _ in range(2))
    assert first.application is not second.application
    answers = [post(client, {"kind": "noop"}, ACME).status_code for client in (first, second) * 3]
    assert answers == [202] * 4 + [429] * 2


def test_status_callers_are_told_apart_by_the_address_the_front_end_saw(make_client):
    job_id = post(make_client("enqueue", **TOKENS), {"kind": "noop"}, ACME).get_json()["id"]
    status = make_client("status", RATE_LIMIT_STATUS="3")

    def get(forwarded_for: str):
        return status.get(f"/?id={job_id}", headers={"X-Forwarded-For": forwarded_for}).status_code

    # A client may put anything in front; Cloud Run's front end appends the address it saw.
    assert [get(f"198.51.100.{n}, 203.0.113.7") for n in range(5)] == [200, 200, 200, 429, 429]
    refused = status.get(f"/?id={job_id}", headers={"X-Forwarded-For": "203.0.113.7"})
    check("/status", "get", refused)
    assert refused.headers["Retry-After"].isdigit()
    assert get("203.0.113.8") == 200  # the next address is another caller
    # One IPv6 site is usually given a /48: its addresses are one caller (RATE_LIMIT_IPV6_PREFIX).
    assert [get(f"2001:db8:0:1::{n:x}") for n in range(1, 5)] == [200, 200, 200, 429]
    assert get("2001:db8:1:2::1") == 200


def test_stream_opens_are_limited_apart_from_plain_reads(make_client):
    job_id = post(make_client("enqueue", **TOKENS), {"kind": "noop"}, ACME).get_json()["id"]
    status = make_client("status", RATE_LIMIT_STREAMS="2", FORWARDED_HOPS="0")
    opened = []
    for _ in range(2):
        stream = status.get(f"/?id={job_id}&stream=1")
        assert stream.status_code == 200
        opened.append(stream)
    refused = status.get(f"/?id={job_id}&stream=1")
    assert refused.status_code == 429 and refused.get_json()["error"]["code"] == "rate_limited"
    assert status.get(f"/?id={job_id}").status_code == 200  # plain reads have their own limit
    for stream in opened:
        stream.close()


def test_a_limit_of_zero_is_no_limit(make_client):
    enqueue = make_client("enqueue", RATE_LIMIT_ENQUEUE="0", **TOKENS)
    assert all(post(enqueue, {"kind": "noop"}, ACME).status_code == 202 for _ in range(10))


def test_concurrent_requests_are_counted_exactly(pool, window):
    limiter = RateLimiter(pool, window_seconds=window)
    admitted, barrier = [], threading.Barrier(16)

    def request() -> None:
        barrier.wait()
        try:
            limiter.count("enqueue", "tenant:acme", limit=10)
            admitted.append(True)
        except RateLimited:
            pass

    threads = [threading.Thread(target=request) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 10


def test_a_new_window_starts_the_count_again_and_ended_windows_are_forgotten(pool, window):
    limiter = RateLimiter(pool, window_seconds=window)
    long_ago = datetime.now(UTC) - timedelta(seconds=3 * window)
    with pool.session() as session:
        session.run_sql(
            "INSERT INTO rate_limits VALUES ('enqueue:tenant:acme', :at, 99), ('status:ip:192.0.2.1', :at, 5)",
            at=long_ago,
        )
    limiter.count("enqueue", "tenant:acme", limit=1)  # 99 was another window's count
    with pytest.raises(RateLimited):
        limiter.count("enqueue", "tenant:acme", limit=1)
    with pool.session() as session:
        buckets = [row[0] for row in session.run_sql("SELECT bucket FROM rate_limits")]
    assert buckets == ["enqueue:tenant:acme"]
