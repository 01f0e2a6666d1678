"""What the campaign sees from outside the queue: every HTTP answer, the database
connections each function holds, and status streams that drop and resume."""

from __future__ import annotations

import contextlib
import random
import sys
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field

import httpx
from httpx_sse import connect_sse

from bench.campaign.faults import admin_session


@dataclass
class Answers:
    """Every HTTP answer the campaign got, by function and status; a 5xx other than 503 (with
    Retry-After) is a bug, and so is a 503 without Retry-After."""

    by_call: Counter = field(default_factory=Counter)
    bad: list[dict] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, name: str, response: httpx.Response) -> httpx.Response:
        code = response.status_code
        with self._lock:
            self.by_call[f"{name} {code}"] += 1
            if code >= 500 and (code != 503 or not response.headers.get("Retry-After")):
                self.bad.append({"call": name, "status": code, "body": response.text[:300]})
        return response

    def unreachable(self, name: str) -> None:
        """No answer at all: the instance is down (killed or frozen); Cloud Tasks would retry."""
        with self._lock:
            self.by_call[f"{name} unreachable"] += 1


class ConnectionSampler(threading.Thread):
    """Samples pg_stat_activity: the most connections each function held at once, and the
    most the pooler held (its server connections carry no function's name)."""

    def __init__(self, url: str, pooled: bool, every: float = 0.5):
        super().__init__(name="connection-sampler", daemon=True)
        self.url, self.pooled, self.every = url, pooled, every
        self.peak: Counter = Counter()
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every):
            with contextlib.suppress(Exception):  # the database may be down: sample the next time
                session = admin_session(self.url, timeout=2)
                try:
                    rows = session.run_sql(
                        "SELECT application_name, count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                        " AND pid <> pg_backend_pid() AND application_name <> 'jobqueue-campaign' GROUP BY 1"
                    )
                finally:
                    session.close()
                now: Counter = Counter()
                for name, count in rows:
                    # Through the pooler, a server connection carries whichever client's name
                    # it last served: only the pooler's total means anything.
                    now["pooler" if self.pooled and name != "jobqueue-notifier" else name] += count
                for name, count in now.items():
                    self.peak[name] = max(self.peak[name], count)

    def peaks(self) -> dict[str, int]:
        return dict(self.peak)


@dataclass
class StreamFollower:
    """Follows one job's status stream, hanging up at random and resuming with
    Last-Event-ID, until `done` or a 204. Keeps every event id it was sent."""

    status_url: str
    job_id: str
    rng: random.Random
    answers: Answers
    seqs: list[int] = field(default_factory=list)
    trace: list[tuple] = field(default_factory=list)
    reconnects: int = 0
    finished: bool = False
    thread: int | None = None  # the following thread's ident, for where() while it runs

    def follow(self, deadline: float) -> None:
        self.thread = threading.get_ident()
        self.trace.append(("began", round(deadline - time.monotonic(), 1)))  # seconds it may follow
        last = None
        while time.monotonic() < deadline and not self.finished:
            hang_up_at = time.monotonic() + self.rng.uniform(0.3, 3.0)
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            try:
                with (
                    httpx.Client(timeout=httpx.Timeout(10.0, read=20.0)) as client,
                    connect_sse(
                        client, "GET", self.status_url, params={"id": self.job_id, "stream": "1"}, headers=headers
                    ) as source,
                ):
                    self.answers.record("status-stream", source.response)
                    self.trace.append(("answered", source.response.status_code))
                    if source.response.status_code == 204:
                        self.finished = True
                        return
                    if source.response.status_code != 200:
                        self.trace.append(("refused", source.response.status_code))
                        time.sleep(0.5)
                        continue
                    for event in source.iter_sse():
                        self.trace.append((event.event, event.id))
                        if event.event == "done":  # its id repeats the last event's, for resuming
                            self.finished = True
                            return
                        if event.event in ("snapshot", "message") or not event.id:
                            continue  # the snapshot, and the `retry:` hint, carry no event
                        self.seqs.append(int(event.id))
                        last = int(event.id)
                        if time.monotonic() > hang_up_at:
                            break  # drop the connection mid-stream
            except (httpx.HTTPError, ValueError) as error:
                self.trace.append(("unreachable", type(error).__name__))
                self.answers.unreachable("status-stream")
                time.sleep(0.5)
            self.reconnects += 1
            self.trace.append(("reconnect", last))

    def where(self) -> str:
        """Where the following thread is now, its innermost frames (a stream that never ended
        says what it waits on): empty once it returned."""
        if self.thread is None:
            return "never began following"
        frame = sys._current_frames().get(self.thread)
        return (
            " < ".join(f"{entry.name}:{entry.lineno}" for entry in traceback.extract_stack(frame)[-6:][::-1])
            if frame
            else ""
        )

    def in_order(self) -> bool:
        return self.seqs == list(range(self.seqs[0], self.seqs[0] + len(self.seqs))) if self.seqs else True
