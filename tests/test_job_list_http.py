"""The tenant journey over real HTTP servers: two tenants enqueue, the first watches its live
list (fetch-style: a GET with an Authorization header, read as it streams), the process
function runs the jobs on the seed's GET, and the second tenant sees and cancels nothing
of the first's."""

import json
import threading
import time

import httpx
import pytest

from client.api import JobQueueClient
from local.stack import Stack

TOKENS = {"acme": "acme-token-0123456789", "globex": "globex-token-0123456789"}
ACME, GLOBEX = ({"Authorization": f"Bearer {token}"} for token in TOKENS.values())


@pytest.fixture
def stack(database_url, tmp_path):
    extra = {"API_TOKENS": ",".join(f"{t}={token}" for t, token in TOKENS.items()), "STREAM_KEEPALIVE_SECONDS": "1"}
    with Stack.on_free_ports(database_url=database_url, extra_env=extra, scheduler=False, log_dir=tmp_path) as running:
        yield running


class LiveList:
    """The live list read on a thread, line by line (keep-alives included, so that a stop is
    noticed within a keep-alive interval); events kept in order."""

    def __init__(self, url: str, headers: dict):
        self.events: list[tuple[str, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(url, headers), daemon=True)
        self._thread.start()

    def _read(self, url: str, headers: dict):
        try:
            with httpx.Client(timeout=30) as client, client.stream("GET", url, headers=headers) as response:
                self._parse(response.iter_lines())
        except httpx.HTTPError:
            pass  # the stack stopped under a test that failed before close()

    def _parse(self, lines):
        name, data = "message", ""
        for line in lines:
            if self._stop.is_set():
                return
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                data = line[len("data: ") :]
            elif not line and data:
                self.events.append((name, json.loads(data)))
                name, data = "message", ""

    def wait_for(self, predicate, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.events):
                return list(self.events)
            time.sleep(0.05)
        raise AssertionError(f"not seen in {timeout} s: {self.events}")

    def close(self):
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive()


def statuses_of(events, job_id):
    return [(data["jobStatus"], data["matches"]) for name, data in events if name == "job" and data["id"] == job_id]


def test_a_tenant_watches_its_jobs_live_and_another_tenant_sees_none_of_them(stack):
    http = httpx.Client(timeout=30)
    live = LiveList(stack.url("status") + "?list=1&stream=1&status=queued,running", ACME)
    live.wait_for(lambda events: events and events[0][0] == "snapshot")
    # Running for about a second: the live list sends a job's latest state at most five times
    # a second, so a job that runs for less may go from queued to completed in one event.
    mine = http.post(stack.url("enqueue"), json={"kind": "demo", "steps": 2, "stepSeconds": 0.5}, headers=ACME).json()
    theirs = http.post(
        stack.url("enqueue"), json={"kind": "demo", "steps": 1, "stepSeconds": 0.1}, headers=GLOBEX
    ).json()
    live.wait_for(lambda events: statuses_of(events, mine["id"]))

    assert http.get(stack.url("process")).status_code == 200  # the seed's Scheduler calls with GET
    assert http.get(stack.url("process")).status_code == 200
    events = live.wait_for(lambda events: ("completed", False) in statuses_of(events, mine["id"]))
    seen = statuses_of(events, mine["id"])
    assert seen[0] == ("queued", True) and ("running", True) in seen and seen[-1] == ("completed", False)
    assert not statuses_of(events, theirs["id"])
    live.close()

    listed = http.get(stack.url("status") + "?list=1", headers=GLOBEX).json()
    assert [job["id"] for job in listed["jobs"]] == [theirs["id"]]
    refused = http.post(stack.url("cancel"), json={"generationId": mine["id"]}, headers=GLOBEX)
    assert refused.status_code == 404
    assert (
        http.get(stack.url("status") + f"?id={mine['id']}").json()["jobStatus"] == "completed"
    )  # the id is the capability
    http.close()


def test_the_python_client_lists_pages_and_reruns(stack, capsys):
    # Imported here, not at collection: the terminal renderer binds sys.stdout when imported,
    # and an import at collection would bind it before other tests' capsys replaces it.
    from client.__main__ import main as cli  # noqa: PLC0415

    def client(token):
        return JobQueueClient(stack.url("enqueue"), stack.url("status"), stack.url("cancel"), token=token)

    acme = client(TOKENS["acme"])
    made = [acme.enqueue({"kind": "demo", "steps": 1}) for _ in range(3)]
    first = acme.list_jobs(limit=2)
    rest = acme.list_jobs(limit=2, cursor=first["nextCursor"])
    assert [job["id"] for job in first["jobs"] + rest["jobs"]] == [job["id"] for job in reversed(made)]
    assert rest["nextCursor"] is None
    assert client(TOKENS["globex"]).list_jobs()["jobs"] == []
    acme.cancel(made[0]["id"])
    assert acme.rerun(made[0]["id"])["rerunOf"] == made[0]["id"]

    urls = ["--status-url", stack.url("status"), "--enqueue-url", stack.url("enqueue"), "--token", TOKENS["acme"]]
    assert cli([*urls, "list", "--status", "cancelled"]) == 0
    assert [job["id"] for job in json.loads(capsys.readouterr().out)["jobs"]] == [made[0]["id"]]
    assert cli([*urls, "rerun", made[1]["id"]]) == 1  # queued: nothing to re-run (409)
    assert "409" in capsys.readouterr().err
