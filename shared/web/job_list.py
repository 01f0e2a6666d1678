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

from shared.core import listing
from shared.core.db import Pool
from shared.core.errors import DatabaseUnavailable
from shared.core.jobs import Job
from shared.core.listing import JobFilter, Page
from shared.core.notifier import JobEvents
from shared.core.settings import Settings
from shared.web.sse import _ReleasingStream, sse

LISTENER_START_SECONDS = 2.0
REMEMBERED_JOBS = 5000
# At most this often a stream reads the jobs that changed: a burst of progress and log
# events (several a second per running job) costs one read, not one per event.
MIN_READ_INTERVAL_SECONDS = 0.2  # per stream: the last JSON sent for each job, to skip repeats


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


class JobListStream:
    def __init__(
        self,
        pool: Pool,
        listener: JobEvents,
        settings: Settings,
        job_body: Callable[[Job], dict],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.pool = pool
        self.listener = listener
        self.settings = settings
        self.job_body = job_body
        self.clock = clock
        self.sleep = sleep

    def events(self, wanted: JobFilter, release: Callable[[], None]) -> Iterator[str]:
        """The live list's text; `release` gives back the open-stream slot the caller took."""
        return _ReleasingStream(self._events(wanted), release)

    def _page(self, wanted: JobFilter) -> Page:
        with self.pool.session() as session:
            return listing.list_jobs(session, wanted)

    def _changed(self, job_ids: set[str], wanted: JobFilter) -> list[Job]:
        with self.pool.session() as session:
            return listing.changed_jobs(session, sorted(job_ids), wanted)

    def _snapshot(self, wanted: JobFilter, sent: OrderedDict) -> dict:
        body = list_body(self._page(wanted), self.job_body)
        sent.clear()
        for job in body["jobs"]:
            sent[job["id"]] = job
        return body

    def _job_events(self, job_ids: set[str], wanted: JobFilter, sent: OrderedDict) -> Iterator[str]:
        for job in self._changed(job_ids, wanted):
            body = listed_job(job, self.job_body)
            if sent.get(job.id) == body:
                continue  # nothing the list shows changed (a log line, say)
            sent[job.id] = body
            sent.move_to_end(job.id)
            if len(sent) > REMEMBERED_JOBS:
                sent.popitem(last=False)
            yield sse("job", {**body, "matches": wanted.matches(job)})

    def _events(self, wanted: JobFilter) -> Iterator[str]:
        settings = self.settings
        started = last_write = self.clock()
        sent: OrderedDict[str, dict] = OrderedDict()
        yield f"retry: {settings.stream_retry_ms}\n\n"
        self.listener.start()
        # On an instance's first stream the listener is still connecting; waiting for it a
        # little spares the client a second snapshot when it comes up.
        self.listener.wait_until_healthy(LISTENER_START_SECONDS)
        # Subscribe before the snapshot: a change that lands while it is read is sent after it.
        with self.listener.subscribed() as feed:
            try:
                snapshot = self._snapshot(wanted, sent)
                yield sse("snapshot", snapshot)
                while True:
                    remaining = settings.stream_max_seconds - (self.clock() - started)
                    if remaining <= 0:
                        yield ": stream time limit reached; reconnect for a fresh snapshot\n\n"
                        return
                    # With the listener up, wake on its notifications; without it, poll.
                    patience = (
                        settings.stream_keepalive_seconds if self.listener.healthy else settings.stream_poll_seconds
                    )
                    job_ids, lost = self.listener.wait_for_jobs(feed, min(patience, remaining))
                    if lost:
                        fresh = self._snapshot(wanted, sent)
                        if fresh != snapshot:  # while polling, say nothing until something changes
                            snapshot = fresh
                            yield sse("snapshot", snapshot)
                            last_write = self.clock()
                    elif job_ids:
                        read_at = self.clock()
                        for event in self._job_events(job_ids, wanted, sent):
                            snapshot = None  # the client's list has moved on from the snapshot
                            yield event
                            last_write = self.clock()
                        self.sleep(max(0.0, MIN_READ_INTERVAL_SECONDS - (self.clock() - read_at)))
                    if self.clock() - last_write >= settings.stream_keepalive_seconds:
                        yield ": keep-alive\n\n"
                        last_write = self.clock()
            except DatabaseUnavailable:
                yield ": the job database is unavailable; reconnect for a fresh snapshot\n\n"
