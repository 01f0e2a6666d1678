"""The job list (GET status?list=1) and its live variant: tenant-scoped, newest first,
paged by an opaque cursor, archive included, every bad parameter named."""

import json
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from shared.core import maintenance, queue
from shared.core.listing import encode_cursor

TENANT_TOKENS = {"acme": "acme-token-0123456789", "globex": "globex-token-0123456789"}
ADMIN = "admin-token-0123456789"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


ACME, GLOBEX, AS_ADMIN = bearer(TENANT_TOKENS["acme"]), bearer(TENANT_TOKENS["globex"]), bearer(ADMIN)


@pytest.fixture
def tenants_env():
    return {"API_TOKENS": ",".join(f"{t}={token}" for t, token in TENANT_TOKENS.items()), "ADMIN_TOKEN": ADMIN}


@pytest.fixture
def status(make_client, tenants_env):
    return make_client("status", **tenants_env)


def add(session, registry, tenant: str, kind: str = "noop", **payload):
    job, _ = queue.enqueue(session, registry, kind=kind, payload=payload, tenant=tenant)
    return job


def listed(client, query: str = "", headers=ACME) -> dict:
    response = client.get(f"/?list=1{query}", headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def ids(body: dict) -> list[str]:
    return [job["id"] for job in body["jobs"]]


def test_the_list_needs_a_valid_token_in_the_header(status, function_env):
    assert status.get("/?list=1").status_code == 401
    assert status.get("/?list=1", headers=bearer("wrong-token")).status_code == 401
    refused = status.get(f"/?list=1&token={TENANT_TOKENS['acme']}")  # never a token in the URL
    assert refused.status_code == 401 and refused.get_json()["error"]["code"] == "unauthorized"
    assert listed(status, headers=bearer(function_env["API_TOKEN"]))["jobs"] == []  # API_TOKEN: "default"


def test_each_tenant_sees_only_its_own_jobs_and_the_admin_sees_all(status, session, registry):
    mine = [add(session, registry, "acme").id for _ in range(3)]
    theirs = [add(session, registry, "globex").id for _ in range(2)]
    default = add(session, registry, "default").id
    assert set(ids(listed(status, headers=ACME))) == set(mine)
    assert set(ids(listed(status, headers=GLOBEX))) == set(theirs)
    everything = listed(status, headers=AS_ADMIN)
    assert set(ids(everything)) == {*mine, *theirs, default}
    assert {job["tenant"] for job in everything["jobs"]} == {"acme", "globex", "default"}
    assert set(ids(listed(status, "&tenant=globex", headers=AS_ADMIN))) == set(theirs)


def test_a_tenant_cannot_widen_its_list_to_another_tenant(status, session, registry):
    add(session, registry, "globex")
    response = status.get("/?list=1&tenant=globex", headers=ACME)
    assert response.status_code == 400
    assert response.get_json()["error"]["details"][0]["field"] == "tenant"
    assert listed(status, "&tenant=acme")["jobs"] == []  # naming itself is harmless


def test_the_list_is_newest_first_and_pages_cover_every_job_once(status, session, registry):
    made = [add(session, registry, "acme").id for _ in range(7)]
    # Two jobs created in the same microsecond are still ordered (by id) and paged apart.
    session.run_sql(
        "UPDATE jobs SET created_at = '2025-01-01T00:00:00Z' WHERE id = ANY(CAST(:ids AS uuid[]))", ids=made[2:4]
    )
    seen, cursor, pages = [], "", 0
    while True:
        body = listed(status, f"&limit=3{cursor}")
        assert len(body["jobs"]) <= 3
        seen += body["jobs"]
        pages += 1
        if body["nextCursor"] is None:
            break
        cursor = f"&cursor={body['nextCursor']}"
    assert pages == 3 and len(seen) == 7 and {job["id"] for job in seen} == set(made)
    newest_first = session.run_sql("SELECT CAST(id AS text) FROM jobs ORDER BY created_at DESC, id DESC")
    assert [job["id"] for job in seen] == [row[0] for row in newest_first]


def test_the_list_filters_by_status_kind_and_creation_time(status, session, registry):
    queued = add(session, registry, "acme")
    other_kind = add(session, registry, "acme", kind="steps")
    running = add(session, registry, "acme")
    session.run_sql("UPDATE jobs SET job_status = 'running' WHERE id = CAST(:id AS uuid)", id=running.id)
    old = add(session, registry, "acme")
    session.run_sql("UPDATE jobs SET created_at = '2024-06-01T00:00:00Z' WHERE id = CAST(:id AS uuid)", id=old.id)

    assert set(ids(listed(status, "&status=running"))) == {running.id}
    assert set(ids(listed(status, "&status=queued,running&kind=noop"))) == {queued.id, running.id, old.id}
    assert set(ids(listed(status, "&kind=steps"))) == {other_kind.id}
    assert set(ids(listed(status, "&createdBefore=2025-01-01T00:00:00Z"))) == {old.id}
    assert old.id not in ids(listed(status, "&createdAfter=2025-01-01"))


def test_an_archived_job_stays_listed(status, session, registry):
    job = add(session, registry, "acme")
    claimed = queue.claim_next(session)
    queue.complete(session, queue.Lease.of(claimed), {"ok": True})
    session.run_sql("UPDATE jobs SET finished_at = now() - interval '40 days' WHERE id = CAST(:id AS uuid)", id=job.id)
    assert maintenance.sweep(session, stalled_after_seconds=60, retention_days=30).archived == 1
    assert session.run_sql("SELECT count(*) FROM jobs")[0][0] == 0
    (found,) = listed(status)["jobs"]
    assert found["id"] == job.id and found["jobStatus"] == "completed"
    assert ids(listed(status, "&status=completed")) == [job.id]
    assert listed(status, "&status=queued,running")["jobs"] == []  # in progress: the archive is skipped
    assert listed(status, headers=GLOBEX)["jobs"] == []


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("&status=done", "status"),
        ("&status=queued,nope", "status"),
        ("&limit=0", "limit"),
        ("&limit=101", "limit"),
        ("&limit=ten", "limit"),
        ("&createdAfter=yesterday", "createdAfter"),
        ("&createdBefore=2025-13-01", "createdBefore"),
        ("&cursor=not-a-cursor", "cursor"),
        ("&cursor=" + "A" * 300, "cursor"),
        ("&kind=" + "k" * 101, "kind"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(status, query, field):
    response = status.get(f"/?list=1{query}", headers=ACME)
    assert response.status_code == 400
    assert [d["field"] for d in response.get_json()["error"]["details"]] == [field]


def test_a_cursor_is_opaque_but_checked(status, session, registry):
    job = add(session, registry, "acme")
    assert listed(status, f"&cursor={encode_cursor(job)}")["jobs"] == []  # the position is after it
    forged = encode_cursor(job)[:-4] + "AAAA"
    assert status.get(f"/?list=1&cursor={forged}", headers=ACME).status_code == 400


# -- the live list ---------------------------------------------------------------------


def sse_events(chunks) -> list[tuple[str, dict]]:
    found = []
    for block in b"".join(chunks).decode().split("\n\n"):
        lines = dict(
            line.split(": ", 1) for line in block.split("\n") if line and not line.startswith(":") and ": " in line
        )
        if "event" in lines:
            found.append((lines["event"], json.loads(lines["data"])))
    return found


class Reader:
    """Reads a streamed response on a thread, so the test can wait for an event with a deadline."""

    def __init__(self, response):
        self.response = response
        self.chunks: list[bytes] = []
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        try:
            for chunk in self.response.response:
                self.chunks.append(chunk)
                if self._stop.is_set():
                    break
        finally:
            self.response.close()  # on this thread: the server closes a stream the client left
            self.done.set()

    def stop(self):
        """Close the stream at its next chunk (a keep-alive at the latest) and wait for it."""
        self._stop.set()
        assert self.done.wait(10)

    def events(self) -> list[tuple[str, dict]]:
        return sse_events(list(self.chunks))

    def wait_for(self, predicate, timeout: float = 10.0) -> list[tuple[str, dict]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            events = self.events()
            if predicate(events):
                return events
            if self.done.is_set():
                break
            time.sleep(0.02)
        raise AssertionError(f"not seen in {timeout} s: {self.events()}")


def open_live_list(status, query: str = "", headers=ACME) -> Reader:
    """A live list whose snapshot has arrived, on an instance whose listener is up."""
    reader = Reader(status.get(f"/?list=1&stream=1{query}", headers=headers))
    reader.wait_for(lambda e: e and e[0][0] == "snapshot")
    listener = sys.modules["main"].listener  # the status module make_client loaded last
    deadline = time.monotonic() + 10
    while not listener.healthy and time.monotonic() < deadline:
        time.sleep(0.02)
    assert listener.healthy
    return reader


def job_events(events, job_id):
    return [data for name, data in events if name == "job" and data["id"] == job_id]


def test_the_live_list_sends_a_snapshot_then_changes_to_the_tenants_jobs_only(
    make_client, tenants_env, session, registry
):
    status = make_client("status", STREAM_MAX_SECONDS="8", STREAM_KEEPALIVE_SECONDS="0.2", **tenants_env)
    before = add(session, registry, "acme")
    reader = open_live_list(status, "&status=queued,running")
    events = reader.events()
    assert [job["id"] for job in events[0][1]["jobs"]] == [before.id] and events[0][1]["nextCursor"] is None

    theirs = add(session, registry, "globex")
    mine = add(session, registry, "acme")
    reader.wait_for(lambda e: job_events(e, mine.id))
    claimed = queue.claim_next(session)  # the older one, `before`: it goes running
    reader.wait_for(lambda e: any(d["jobStatus"] == "running" for d in job_events(e, claimed.id)))
    queue.complete(session, queue.Lease.of(claimed), None)
    events = reader.wait_for(lambda e: any(d["jobStatus"] == "completed" for d in job_events(e, claimed.id)))
    # A job that leaves the status filter is sent once more, marked as no longer matching.
    assert [d["matches"] for d in job_events(events, claimed.id)] == [True, False]
    assert job_events(events, mine.id)[0]["matches"] is True and job_events(events, mine.id)[0]["tenant"] == "acme"
    assert not job_events(events, theirs.id)
    reader.stop()


def test_the_admins_live_list_sees_every_tenant(make_client, tenants_env, session, registry):
    status = make_client("status", STREAM_MAX_SECONDS="8", STREAM_KEEPALIVE_SECONDS="0.2", **tenants_env)
    reader = open_live_list(status, headers=AS_ADMIN)
    jobs = [add(session, registry, tenant) for tenant in ("acme", "globex")]
    reader.wait_for(lambda e: all(job_events(e, job.id) for job in jobs))
    reader.stop()


def test_the_live_list_needs_the_token_and_closes_at_its_time_limit(make_client, tenants_env, session, registry):
    status = make_client("status", STREAM_MAX_SECONDS="1", STREAM_KEEPALIVE_SECONDS="0.3", **tenants_env)
    assert status.get("/?list=1&stream=1").status_code == 401
    assert status.get("/?list=1", headers={"Accept": "text/event-stream"}).status_code == 401
    started = time.monotonic()
    response = status.get("/?list=1&stream=1", headers=GLOBEX)
    assert response.mimetype == "text/event-stream"
    text = b"".join(response.response).decode()
    assert time.monotonic() - started < 8
    assert text.startswith("retry: ") and "event: snapshot" in text
    assert ": keep-alive" in text and "stream time limit reached" in text


def test_a_log_line_alone_sends_nothing_on_the_live_list(make_client, tenants_env, session, registry):
    status = make_client("status", STREAM_MAX_SECONDS="8", STREAM_KEEPALIVE_SECONDS="0.2", **tenants_env)
    add(session, registry, "acme")
    claimed = queue.claim_next(session)
    reader = open_live_list(status)
    lease = queue.Lease.of(claimed)
    queue.append_event(session, lease, "log", {"message": "hello"})
    # Two keep-alives later the log line's notification has long been handled (in ms).
    seen = len(reader.chunks)
    deadline = time.monotonic() + 10
    while sum(b"keep-alive" in chunk for chunk in reader.chunks[seen:]) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    queue.record_progress(session, lease, 50, "Processing", "half")
    events = reader.wait_for(lambda e: job_events(e, claimed.id))
    assert [d["progress"] for d in job_events(events, claimed.id)] == [50]  # the log line sent nothing
    assert [name for name, _ in events] == ["snapshot", "job"]
    reader.stop()


def test_streams_past_the_limit_refuse_the_live_list_too(make_client, tenants_env):
    status = make_client("status", MAX_OPEN_STREAMS="1", **tenants_env)
    first = status.get("/?list=1&stream=1", headers=ACME)
    assert next(iter(first.response)).startswith(b"retry: ")
    assert status.get("/?list=1&stream=1", headers=ACME).status_code == 429
    first.close()
    again = status.get("/?list=1&stream=1", headers=ACME)
    assert again.status_code == 200
    again.close()


def test_created_range_keeps_its_timezone(status, session, registry):
    job = add(session, registry, "acme")
    created = datetime.fromisoformat(listed(status)["jobs"][0]["createdAt"].replace("Z", "+00:00"))
    after = (created - timedelta(seconds=1)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")  # no offset: UTC
    assert ids(listed(status, f"&createdAfter={after}")) == [job.id]
