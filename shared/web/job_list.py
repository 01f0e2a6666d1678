"""The job list as JSON, and its live variant as Server-Sent Events.

    retry: <ms>
    event: snapshot     {"jobs": [...], "nextCursor": ...}: the first page for the filter
    event: job          {<job>, "matches": bool}: a job in the list's scope changed
    : keep-alive        every STREAM_KEEPALIVE_SECONDS of silence

A list has no single sequence to resume from, so a reconnect gets a fresh snapshot. Changes
arrive through the instance's one LISTEN connection; the stream reads the changed jobs in
one statement per wake-up and sends those whose JSON changed (a log line alone changes
nothing in the job). When the listener lost notifications (it reconnected, or too many
piled up), the stream sends a fresh snapshot instead. Connections are borrowed per query.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from shared.core import listing
from shared.core.jobs import Job
from shared.core.listing import JobFilter, Page
from shared.core.notifier import ChangeFeed
from shared.web.sse import Next, Streams, sse

LISTENER_START_SECONDS = 2.0
REMEMBERED_JOBS = 5000
# At most this often a stream reads the jobs that changed: a burst of progress and log
# events (several a second per running job) costs one read, not one per event.
MIN_READ_INTERVAL_SECONDS = 0.2


# A listed job carries its payload when it is this small: the archive's cards show what was
# asked for (a newsletter's range, sources and format); a large one stays out of every page
# and of every change the live list sends.
LISTED_PAYLOAD_MAX_CHARS = 2048


def listed_job(job: Job, job_body: Callable[[Job], dict]) -> dict:
    """A job as the list shows it: the job object, whose it is, and its payload when small.
    (The list is the tenant's own, behind its token; the public status answer has no payload.)"""
    body = {**job_body(job), "tenant": job.tenant}
    if len(json.dumps(job.payload)) <= LISTED_PAYLOAD_MAX_CHARS:
        body["payload"] = job.payload
    return body


def list_body(page: Page, job_body: Callable[[Job], dict]) -> dict:
    return {"jobs": [listed_job(job, job_body) for job in page.jobs], "nextCursor": page.next_cursor}


class _ListFeed:
    """A job list: a snapshot, then the jobs that changed in its scope; a fresh snapshot when
    notifications were lost, or on each poll while no one listens (sent only if it differs)."""

    resume = "reconnect for a fresh snapshot"

    def __init__(self, stream: JobListStream, wanted: JobFilter):
        self.stream = stream
        self.wanted = wanted
        self.sent: OrderedDict[str, dict] = OrderedDict()  # the last JSON sent for each job, to skip repeats
        self.snapshot: dict | None = None  # the last snapshot, while the client's list is still that
        self.changes = ChangeFeed()
        self.job_ids: set[str] = set()
        self.lost = True  # nothing read yet: the first send is a snapshot
        self.read_at = -MIN_READ_INTERVAL_SECONDS

    @contextmanager
    def open(self) -> Iterator[None]:
        # On an instance's first stream the listener is still connecting; waiting for it a
        # little spares the client a second snapshot when it comes up.
        self.stream.listener.wait_until_healthy(LISTENER_START_SECONDS)
        # Subscribe before the snapshot: a change that lands while it is read is sent after it.
        with self.stream.listener.subscribed() as self.changes:
            yield

    def send(self) -> tuple[list[str], Next]:
        job_ids, self.job_ids = self.job_ids, set()
        if self.lost:
            self.lost = False
            return self._fresh_snapshot(), Next.WAIT
        if not job_ids:
            return [], Next.WAIT
        self.read_at = self.stream.clock()
        chunks = list(self._job_events(job_ids))
        if chunks:
            self.snapshot = None  # the client's list has moved on from the snapshot
        return chunks, Next.WAIT

    def wait(self, timeout: float) -> bool:
        # A burst of progress and log events (several a second per running job) costs one read, not one per event.
        stream = self.stream
        time.sleep(max(0.0, MIN_READ_INTERVAL_SECONDS - (stream.clock() - self.read_at)))
        job_ids, lost = stream.listener.wait_for_jobs(self.changes, timeout)
        self.job_ids |= job_ids
        self.lost = self.lost or lost
        # While no one listens every wait ends `lost`: that is a poll, due when the loop's wait is over.
        return bool(job_ids) or (lost and stream.listener.healthy)

    def _fresh_snapshot(self) -> list[str]:
        with self.stream.pool.session() as session:
            body = list_body(listing.list_jobs(session, self.wanted), self.stream.job_body)
        self.sent.clear()
        for job in body["jobs"]:
            self.sent[job["id"]] = job
        if body == self.snapshot:
            return []  # while polling, say nothing until something changes
        self.snapshot = body
        return [sse("snapshot", body)]

    def _job_events(self, job_ids: set[str]) -> Iterator[str]:
        with self.stream.pool.session() as session:
            changed = listing.changed_jobs(session, sorted(job_ids), self.wanted)
        for job in changed:
            body = listed_job(job, self.stream.job_body)
            if self.sent.get(job.id) == body:
                continue  # nothing the list shows changed (a log line, say)
            self.sent[job.id] = body
            self.sent.move_to_end(job.id)
            if len(self.sent) > REMEMBERED_JOBS:
                self.sent.popitem(last=False)
            yield sse("job", {**body, "matches": self.wanted.matches(job)})


class JobListStream(Streams):
    def events(
        self, wanted: JobFilter, release: Callable[[], None], connected: Callable[[], bool] = lambda: True
    ) -> Iterator[str]:
        """The live list's text; `release` gives back the open-stream slot the caller took, and
        the stream ends when `connected` says the client went away."""
        return self.loop.run(_ListFeed(self, wanted), release, connected)
