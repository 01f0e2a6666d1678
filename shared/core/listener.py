"""One LISTEN connection per instance that wakes the status streams waiting on a job.

Every job event fires `pg_notify('job_events', '<job id>:<seq>')` (a trigger on job_events).
Instead of each open stream polling the database, streams wait on a per-job condition and
this thread wakes them when a notification for their job arrives. If the listening
connection is down, `healthy` is False and streams fall back to polling.

A job list's stream subscribes to every job instead (`subscribed`): it gets the ids of the
jobs that changed since it last looked, or word that some were lost (the connection was
down, or more piled up than a feed holds) and it should read its list afresh.
"""

from __future__ import annotations

import select
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from shared.core import log
from shared.core.db import connect
from shared.core.errors import DatabaseUnavailable
from shared.core.settings import DatabaseTarget

CHANNEL = "job_events"
_POLL_SECONDS = 1.0
_RECONNECT_SECONDS = 1.0
FEED_CAPACITY = 1000  # job ids a list stream's feed holds before it is told to read afresh


class ChangeFeed:
    """One list stream's pending changes: job ids, or `lost` when some were missed."""

    def __init__(self):
        self.job_ids: set[str] = set()
        self.lost = False


class JobEventListener:
    def __init__(self, target: DatabaseTarget, timeout: float = 10.0):
        self.target = target
        self.timeout = timeout
        self._versions: dict[str, int] = defaultdict(int)
        self._waiters: dict[str, int] = defaultdict(int)
        self._feeds: set[ChangeFeed] = set()
        self._changed = threading.Condition()
        self._healthy = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    @property
    def healthy(self) -> bool:
        return self._healthy.is_set()

    def start(self) -> None:
        """Start the listening thread on first use (not at import: cold start stays cheap)."""
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._listen_forever, name="job-event-listener", daemon=True)
                self._thread.start()

    def wait_until_healthy(self, timeout: float) -> bool:
        return self._healthy.wait(timeout)

    def stop(self) -> None:
        self._stopped.set()

    @contextmanager
    def watching(self, job_id: str) -> Iterator[None]:
        """Keep count of this job's changes while a stream is open on it."""
        with self._changed:
            self._waiters[job_id] += 1
        try:
            yield
        finally:
            with self._changed:
                self._waiters[job_id] -= 1
                if not self._waiters[job_id]:
                    del self._waiters[job_id]
                    self._versions.pop(job_id, None)

    def version(self, job_id: str) -> int:
        """A counter of changes seen for a watched job; read it before reading the events."""
        with self._changed:
            return self._versions.get(job_id, 0)

    def wait_for_change(self, job_id: str, seen_version: int, timeout: float) -> int:
        """Block until the job's version passes `seen_version` or `timeout` passes."""
        with self._changed:
            self._changed.wait_for(lambda: self._versions.get(job_id, 0) != seen_version, timeout)
            return self._versions.get(job_id, 0)

    @contextmanager
    def subscribed(self) -> Iterator[ChangeFeed]:
        """Collect the ids of every job that changes while a list stream is open."""
        feed = ChangeFeed()
        with self._changed:
            self._feeds.add(feed)
        try:
            yield feed
        finally:
            with self._changed:
                self._feeds.discard(feed)

    def wait_for_jobs(self, feed: ChangeFeed, timeout: float) -> tuple[set[str], bool]:
        """Block until the feed has changes or `timeout` passes; take them: (job ids, lost).
        While the listening connection is down every wait ends lost: the stream then polls
        (reads its list afresh) rather than miss changes."""
        with self._changed:
            if not self._healthy.is_set():
                self._changed.wait(timeout)
                feed.job_ids, feed.lost = set(), False
                return set(), True
            self._changed.wait_for(lambda: feed.job_ids or feed.lost, timeout)
            taken, lost = feed.job_ids, feed.lost
            feed.job_ids, feed.lost = set(), False
            return (set(), True) if lost else (taken, False)

    def _has_waiters(self) -> bool:
        with self._changed:
            return bool(self._waiters) or bool(self._feeds)

    def _notify(self, job_ids: set[str]) -> None:
        with self._changed:
            watched = [job_id for job_id in job_ids if job_id in self._waiters]
            for job_id in watched:
                self._versions[job_id] += 1
            for feed in self._feeds:
                feed.job_ids |= job_ids
                if len(feed.job_ids) > FEED_CAPACITY:
                    feed.job_ids.clear()
                    feed.lost = True
            if watched or self._feeds:
                self._changed.notify_all()

    def _listen_forever(self) -> None:
        while not self._stopped.is_set():
            try:
                self._listen_once()
            except (DatabaseUnavailable, OSError, Exception) as exc:  # noqa: BLE001 (keep the thread alive)
                if self._healthy.is_set():
                    log.warning("Status listener lost its connection; streams poll until it is back", error=str(exc))
                self._healthy.clear()
                self._wake_everyone()
                self._stopped.wait(_RECONNECT_SECONDS)

    def _wake_everyone(self) -> None:
        with self._changed:
            for job_id in list(self._waiters):
                self._versions[job_id] += 1
            for feed in self._feeds:
                feed.lost = True
            self._changed.notify_all()

    def _listen_once(self) -> None:
        conn = connect(self.target, self.timeout, application_name="jobqueue-listener")
        try:
            conn.execute_simple(f"LISTEN {CHANNEL}")
            self._healthy.set()
            # Wake everyone once: a stream may have missed changes while we were away.
            self._wake_everyone()
            while not self._stopped.is_set():
                readable, _, _ = select.select([conn._usock], [], [], _POLL_SECONDS)
                # pg8000 reads notifications while it handles a statement's messages. While
                # streams wait, also look once a tick: a notification can sit in a read
                # buffer (pg8000's, or TLS's) where select() does not see it.
                if readable or self._has_waiters():
                    conn.execute_simple("SELECT 1")
                    self._drain(conn)
        finally:
            self._healthy.clear()
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def _drain(self, conn) -> None:
        job_ids = set()
        while conn.notifications:
            _, channel, payload = conn.notifications.popleft()
            if channel == CHANNEL:
                job_ids.add(payload.partition(":")[0])
        if job_ids:
            self._notify(job_ids)
