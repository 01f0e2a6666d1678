"""One LISTEN connection per process, fanned out in memory by topic (as River's notifier).

A topic is a PostgreSQL notification channel:

    job_events   '<job id>:<seq>' on every job event (a trigger on job_events); the status
                 streams wait on it (JobEvents below) instead of polling
    job_cancel   '<job id>' on a cancel request of a running job (migration 0009); the
                 runner's watcher sets the handler's `ctx.cancelled` at once

Whoever wants a topic subscribes with a callback; the notifier LISTENs to the topics that
have subscribers, on one connection, started on the first subscription (not at import:
cold start stays cheap) and closed when the last one goes (an idle instance holds no
connection). A subscriber is told when its topic is being listened to (`on_listening`: a
notification sent before that reached no one, so look again) and when the connection is
lost (`on_lost`: fall back to polling); the notifier reconnects with backoff. LISTEN is
session state, so this connection is a direct one (DATABASE_DIRECT_URL), never through a
transaction pooler.
"""

from __future__ import annotations

import re
import select
import socket
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from shared.core import log
from shared.core.backoff import backoff_seconds
from shared.core.db import connect
from shared.core.settings import DatabaseTarget

JOB_EVENTS = "job_events"
JOB_CANCEL = "job_cancel"
APPLICATION_NAME = "jobqueue-notifier"
POLL_SECONDS = 1.0
RECONNECT_BASE_SECONDS, RECONNECT_MAX_SECONDS = 1.0, 15.0
_TOPIC = re.compile(r"[a-z_][a-z0-9_]*")  # LISTEN takes an identifier, not a parameter
FEED_CAPACITY = 1000  # job ids a list stream's feed holds before it is told to read afresh


def _nothing() -> None:
    pass


class Subscription:
    """One subscriber's interest in one topic; `close()` ends it."""

    def __init__(
        self,
        notifier: Notifier,
        topic: str,
        on_message: Callable[[list[str]], None],
        on_listening: Callable[[], None],
        on_lost: Callable[[], None],
        busy: Callable[[], bool],
    ):
        self.notifier = notifier
        self.topic = topic
        self.on_message = on_message
        self.on_listening = on_listening
        self.on_lost = on_lost
        self.busy = busy
        self.listening = False  # True from on_listening to on_lost

    def close(self) -> None:
        self.notifier.unsubscribe(self)


class Notifier:
    def __init__(self, target: DatabaseTarget, timeout: float = 10.0, application_name: str = APPLICATION_NAME):
        self.target = target
        self.timeout = timeout
        self.application_name = application_name
        self._lock = threading.Lock()
        self._subscriptions: list[Subscription] = []
        self._listened: set[str] = set()
        self._thread: threading.Thread | None = None
        self._changed = threading.Event()  # a subscription came or went: the backoff ends early
        self._wake: socket.socket | None = None  # written to when it did: select() ends early
        self._conn = None
        self.connections = 0  # opened so far (tests)

    def subscribe(
        self,
        topic: str,
        on_message: Callable[[list[str]], None],
        on_listening: Callable[[], None] = _nothing,
        on_lost: Callable[[], None] = _nothing,
        busy: Callable[[], bool] = lambda: True,
    ) -> Subscription:
        """Call `on_message(payloads)` with the topic's notifications, a batch per read.
        `busy()` says whether the subscriber is waiting on something right now: while any
        is, the connection is read every POLL_SECONDS even when the socket looks quiet."""
        if not _TOPIC.fullmatch(topic):
            raise ValueError(f"not a channel name: {topic!r}")
        subscription = Subscription(self, topic, on_message, on_listening, on_lost, busy)
        with self._lock:
            self._subscriptions.append(subscription)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="notifier", daemon=True)
                self._thread.start()
        self._subscriptions_changed()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription in self._subscriptions:
                self._subscriptions.remove(subscription)
        self._subscriptions_changed()

    def _subscriptions_changed(self) -> None:
        self._changed.set()
        wake = self._wake
        if wake is not None:
            try:
                wake.send(b"!")
            except OSError:  # closed as the loop ended: the next one looks anyway
                pass

    @property
    def running(self) -> bool:
        with self._lock:
            return self._thread is not None

    def drop_connection(self) -> None:
        """Close the listening connection as a network failure would (tests, fault runs)."""
        conn = self._conn
        if conn is not None:
            try:
                conn._usock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _wanted(self) -> bool:
        """Whether anyone still subscribes; if not, this thread is done (decided under the
        lock, so a subscription that comes now starts a new thread)."""
        with self._lock:
            if not self._subscriptions:
                self._thread = None
                return False
            return True

    def _run(self) -> None:
        failures = 0
        while self._wanted():
            try:
                self._listen_once()
                failures = 0
            except Exception as exc:  # noqa: BLE001 (keep the thread alive whatever broke)
                failures += 1
                if failures == 1:
                    log.warning("Notifier lost its connection; subscribers poll until it is back", error=str(exc))
                self._changed.clear()
                self._changed.wait(backoff_seconds(failures, RECONNECT_BASE_SECONDS, RECONNECT_MAX_SECONDS))

    def _listen_once(self) -> None:
        conn = connect(self.target, self.timeout, application_name=self.application_name)
        self._conn = conn
        self.connections += 1
        woken, self._wake = socket.socketpair()
        try:
            while self._follow_subscriptions(conn):
                readable, _, _ = select.select([conn._usock, woken], [], [], POLL_SECONDS)
                if woken in readable:
                    woken.recv(4096)
                    readable.remove(woken)
                # pg8000 reads notifications while it handles a statement's messages, and one
                # can sit in a read buffer (pg8000's, or TLS's) where select() does not see it:
                # while a subscriber waits, a statement every poll flushes it and proves the
                # connection alive.
                if readable or self._busy():
                    conn.execute_simple("SELECT 1")
                    self._deliver(conn)
        finally:
            self._conn = None
            wake, self._wake = self._wake, None
            wake.close()
            woken.close()
            self._lose_all()
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def _follow_subscriptions(self, conn) -> bool:
        """LISTEN to every subscribed topic, UNLISTEN the rest, tell new subscribers they are
        heard; False when no one subscribes any more."""
        with self._lock:
            wanted = {subscription.topic for subscription in self._subscriptions}
        if not wanted:
            return False
        for topic in sorted(wanted - self._listened):
            conn.execute_simple(f"LISTEN {topic}")
            self._listened.add(topic)
        for topic in sorted(self._listened - wanted):
            conn.execute_simple(f"UNLISTEN {topic}")
            self._listened.discard(topic)
        for subscription in self._current():
            if not subscription.listening and subscription.topic in self._listened:
                subscription.listening = True
                subscription.on_listening()
        return True

    def _current(self) -> list[Subscription]:
        with self._lock:
            return list(self._subscriptions)

    def _busy(self) -> bool:
        return any(subscription.busy() for subscription in self._current())

    def _deliver(self, conn) -> None:
        payloads: dict[str, list[str]] = defaultdict(list)
        while conn.notifications:
            _, channel, payload = conn.notifications.popleft()
            payloads[channel].append(payload)
        for subscription in self._current():
            if payloads.get(subscription.topic):
                subscription.on_message(payloads[subscription.topic])

    def _lose_all(self) -> None:
        self._listened = set()
        for subscription in self._current():
            if subscription.listening:
                subscription.listening = False
                subscription.on_lost()


_notifiers: dict[DatabaseTarget, Notifier] = {}
_notifiers_lock = threading.Lock()


def notifier_for(target: DatabaseTarget, timeout: float = 10.0) -> Notifier:
    """The process's one notifier for this database (created on first use, not connected
    until someone subscribes)."""
    with _notifiers_lock:
        if target not in _notifiers:
            _notifiers[target] = Notifier(target, timeout)
        return _notifiers[target]


class ChangeFeed:
    """One list stream's pending changes: job ids, or `lost` when some were missed."""

    def __init__(self):
        self.job_ids: set[str] = set()
        self.lost = False


class JobEvents:
    """The job_events topic for the status streams: a stream on one job waits on that job's
    change counter (`watching`, `wait_for_change`); a job list's stream subscribes to every
    job (`subscribed`) and gets the ids of the jobs that changed since it last looked, or word
    that some were lost (the connection was down, or more piled up than a feed holds) and it
    should read its list afresh. While the topic is not heard, `healthy` is False and the
    streams poll."""

    def __init__(self, notifier: Notifier):
        self.notifier = notifier
        self._versions: dict[str, int] = defaultdict(int)
        self._waiters: dict[str, int] = defaultdict(int)
        self._feeds: set[ChangeFeed] = set()
        self._changed = threading.Condition()
        self._healthy = threading.Event()
        self._subscription: Subscription | None = None
        self._start_lock = threading.Lock()

    @property
    def healthy(self) -> bool:
        return self._healthy.is_set()

    def start(self) -> None:
        """Subscribe on the first stream (idempotent)."""
        with self._start_lock:
            if self._subscription is None:
                self._subscription = self.notifier.subscribe(
                    JOB_EVENTS, self._on_message, self._on_listening, self._on_lost, self._has_waiters
                )

    def wait_until_healthy(self, timeout: float) -> bool:
        return self._healthy.wait(timeout)

    def stop(self) -> None:
        with self._start_lock:
            if self._subscription is not None:
                self._subscription.close()
                self._subscription = None
        self._on_lost()

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
        While the topic is not heard every wait ends lost: the stream then polls (reads its
        list afresh) rather than miss changes."""
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

    def _on_message(self, payloads: list[str]) -> None:
        self._notify({payload.partition(":")[0] for payload in payloads})

    def _on_listening(self) -> None:
        self._healthy.set()
        self._wake_everyone()  # a stream may have missed changes while no one listened

    def _on_lost(self) -> None:
        self._healthy.clear()
        self._wake_everyone()

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

    def _wake_everyone(self) -> None:
        with self._changed:
            for job_id in list(self._waiters):
                self._versions[job_id] += 1
            for feed in self._feeds:
                feed.lost = True
            self._changed.notify_all()
