"""`make dev` as a newcomer meets it: `python -m local.stack` (what the target runs), started
here on free ports and on the test's database. It says where to click and those pages answer;
the dashboard's default range (the last seven days) makes a newsletter with stories from the
demo feeds; a function that dies is said and restarted; and after SIGTERM with a stream open,
a restart on the same ports gets them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest

from local.feedserver import FIXED_WEEK_ENDS
from local.functions import FUNCTIONS, REPO
from local.postgres import free_port
from local.reaper import forget_group, group_members, popen_tied
from local.stack import DEV_TOKEN, last_seven_days

AUTH = {"Authorization": f"Bearer {DEV_TOKEN}"}
READY = "Ctrl-C stops everything."


class DevStack:
    """`python -m local.stack` in a child process; its output read line by line."""

    def __init__(self, database_url: str, ports: dict[str, int] | None = None):
        self.ports = ports or {name: free_port() for name in (*FUNCTIONS, "feeds", "tasks")}
        env = {**os.environ, "DATABASE_URL": database_url, "PYTHONUNBUFFERED": "1"}
        env |= {f"{name.upper()}_PORT": str(port) for name, port in self.ports.items()}
        # Tied to this test run: if it is killed outright, the reaper stops make dev (SIGTERM).
        self.process = popen_tied(
            [sys.executable, "-m", "local.stack"], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for raw in self.process.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, pattern: str, seconds: float = 120.0) -> re.Match:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = re.search(pattern, self.output)
            if found:
                return found
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in make dev's output:\n{self.output[-4000:]}")

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}/"

    def stop(self, sig: int = signal.SIGTERM, seconds: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(seconds)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            forget_group(self.process.pid)
            self._reader.join(10)
            self.process.stdout.close()


@pytest.fixture
def dev(database_url):
    stack = DevStack(database_url)
    try:
        stack.wait_for(re.escape(READY))
        yield stack
    finally:
        stack.stop()


def demo_source_ids(dev: DevStack) -> list[int]:
    return [int(i) for i in dev.wait_for(r"demo sources ((?:\d+, )*\d+)")[1].split(", ")]


def enqueue_newsletter(dev: DevStack, date_range: dict) -> str:
    body = {"dateRange": date_range, "selectedSources": demo_source_ids(dev), "outputFormat": "markdown"}
    response = httpx.post(dev.url("enqueue"), json=body, headers=AUTH, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def wait_for_status(dev: DevStack, job_id: str, wanted: tuple[str, ...], seconds: float = 90.0) -> dict:
    deadline = time.monotonic() + seconds
    job = {}
    while time.monotonic() < deadline:
        job = httpx.get(dev.url("status"), params={"id": job_id}, timeout=30).json()
        if job["jobStatus"] in wanted:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not {wanted} in {seconds:.0f} s: {job}")


def test_make_dev_says_where_to_click_and_each_link_opens_a_page(dev):
    dashboard = dev.wait_for(r"dashboard +(\S+)")[1]
    archive = dev.wait_for(r"archive +(\S+)")[1]
    status_page = dev.wait_for(r"status page +(\S+)")[1]
    assert dashboard == dev.url("enqueue")
    job_id = enqueue_newsletter(dev, last_seven_days())
    html = {"Accept": "text/html"}
    # As a pasted link: the URL alone opens the page (curl and a browser alike), not raw JSON.
    for url, marker in (
        (dashboard, "Submit for generation"),
        (archive, "<html"),
        (status_page.replace("<id>", job_id), job_id),
    ):
        for headers in (html, {}):
            response = httpx.get(url, headers=headers, timeout=30)
            assert response.status_code == 200, (url, response.text[:300])
            assert response.headers["content-type"].startswith("text/html"), (url, response.headers)
            assert marker in response.text, url


def test_the_dashboards_default_range_makes_a_newsletter_with_stories_under_make_dev(dev):
    job = wait_for_status(dev, enqueue_newsletter(dev, last_seven_days()), ("completed", "failed"))
    assert job["jobStatus"] == "completed", job
    assert job["result"]["entryCount"] > 0, job["result"]
    # The feeds' week ends today; the entry dated before the demo's week stays outside it.
    feed = httpx.get(dev.url("feeds") + "engineering.xml", timeout=30).text
    dates = [parsedate_to_datetime(d).date() for d in re.findall(r"<pubDate>([^<]+)</pubDate>", feed)]
    shift = datetime.now(UTC).date() - FIXED_WEEK_ENDS
    assert max(dates) >= datetime.now(UTC).date() - timedelta(days=6), dates
    shipped = Path(REPO / "local" / "feeds" / "engineering.xml").read_text()
    fixed = [parsedate_to_datetime(d).date() for d in re.findall(r"<pubDate>([^<]+)</pubDate>", shipped)]
    assert [d - shift for d in dates] == fixed


def listening_pids(port: int) -> list[int]:
    """The processes holding the socket that listens on 127.0.0.1:port (Linux's /proc)."""
    wanted = f"0100007F:{port:04X}"
    inodes = {
        line.split()[9]
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        if line.split()[1] == wanted and line.split()[3] == "0A"
    }
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                folder = f"/proc/{entry.name}/fd"
                links = {os.readlink(f"{folder}/{fd}") for fd in os.listdir(folder)}
            except OSError:
                continue
            if any(f"socket:[{inode}]" in links for inode in inodes):
                pids.append(int(entry.name))
    return pids


def test_make_dev_says_when_a_function_exits_and_restarts_it(dev):
    pids = listening_pids(dev.ports["status"])
    assert pids, "nothing listens on status's port"
    group = os.getpgid(pids[0])
    os.killpg(group, signal.SIGKILL)
    dev.wait_for(r"status exited \(killed by SIGKILL\); restarting it")
    dev.wait_for(r"status is serving again")
    assert not group_members(group)
    response = httpx.get(dev.url("status"), params={"id": "00000000-0000-0000-0000-000000000000"}, timeout=30)
    assert response.status_code == 404, response.text
    assert dev.process.poll() is None


def test_after_sigterm_with_a_stream_open_a_restart_gets_every_port(database_url):
    first = DevStack(database_url)
    try:
        first.wait_for(re.escape(READY))
        # A job that waits an hour to run: its stream stays open until the server goes.
        run_at = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        body = {"kind": "demo", "steps": 1, "runAt": run_at}
        job_id = httpx.post(first.url("enqueue"), json=body, headers=AUTH, timeout=30).json()["id"]
        opened = threading.Event()

        def follow() -> None:
            try:
                with httpx.stream("GET", first.url("status"), params={"id": job_id, "stream": "1"}, timeout=120) as s:
                    for _ in s.iter_raw():
                        opened.set()
            except httpx.HTTPError:
                pass  # the server went away: what this test does to it

        streaming = threading.Thread(target=follow, daemon=True)
        streaming.start()
        assert opened.wait(30), "the stream did not open"
        first.process.send_signal(signal.SIGTERM)
        # At once, as `kill $pid; make dev` would: not after the first has finished stopping.
        second = DevStack(database_url, ports=first.ports)
        assert first.stop(signal.SIGTERM) == 0, first.output[-3000:]
    finally:
        first.stop(signal.SIGKILL)
    try:
        second.wait_for(re.escape(READY))
        assert "Address already in use" not in second.output
        assert httpx.get(second.url("status"), params={"id": job_id}, timeout=30).status_code == 200
    finally:
        assert second.stop(signal.SIGTERM) == 0
