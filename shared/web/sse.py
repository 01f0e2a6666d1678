"""A job's live status as Server-Sent Events, resumable from any event sequence number.

    retry: <ms>                 reconnect delay hint
    event: snapshot             the job as it is now (fresh connections only; no id)
    id: <seq> / event: <kind>   every event after the client's Last-Event-ID, in order:
                                status, progress, log, preview ...
    : keep-alive                a comment every STREAM_KEEPALIVE_SECONDS of silence
    event: done                 the finished job, after which the stream closes

A stream also closes after STREAM_MAX_SECONDS (below the function's timeout); the client
reconnects with Last-Event-ID and gets exactly the events it missed. Database connections
are borrowed per query, never held for the life of a stream.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator

from shared.core import queue
from shared.core.db import Pool
from shared.core.errors import DatabaseUnavailable, TooManyStreams
from shared.core.jobs import TERMINAL_STATUSES, Job, iso
from shared.core.notifier import JobEvents
from shared.core.queue import Event
from shared.core.settings import Settings

EVENTS_PER_READ = 500
# How often a silent stream looks at its socket: a client that went away gives back its
# slot (and its thread) within about this long, not at the next keep-alive write.
LIVENESS_CHECK_SECONDS = 1.0


def peer_connected(environ: dict) -> Callable[[], bool]:
    """Whether the client of this WSGI request is still there, asked without writing: the
    connection's socket (gunicorn's and werkzeug's servers expose it) polled for a hang-up,
    or readable with nothing to read (end of file). Without a socket (a test client), True."""
    sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
    if sock is None:
        return lambda: True

    def connected() -> bool:
        try:
            poller = select.poll()
            poller.register(sock, select.POLLIN | select.POLLHUP | select.POLLERR)
            events = poller.poll(0)
            if not events:
                return True
            if events[0][1] & (select.POLLHUP | select.POLLERR):
                return False
            return sock.recv(1, socket.MSG_PEEK) != b""  # readable: data, or end of file
        except (OSError, ValueError):  # closed or detached
            return False

    return connected


class _ReleasingStream:
    """An iterator that runs `release` once, when it is exhausted or closed (the server
    closes a response's iterable when the client goes away)."""

    def __init__(self, inner: Iterator[str], release: Callable[[], None]):
        self._inner = inner
        self._release = release

    def __iter__(self) -> _ReleasingStream:
        return self

    def __next__(self) -> str:
        try:
            return next(self._inner)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._inner.close()
        release, self._release = self._release, None
        if release is not None:
            release()


def sse(event: str, data: dict, event_id: int | None = None) -> str:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


def event_body(event: Event) -> dict:
    return {"seq": event.seq, "kind": event.kind, "at": iso(event.created_at), **event.data}


def is_terminal_event(event: Event) -> bool:
    return event.kind == "status" and event.data.get("jobStatus") in TERMINAL_STATUSES


class StreamSlots:
    """The streams one instance holds open. Each holds a server thread: past `total`, new
    ones are refused (429) so that plain requests still find a thread; and no one caller (an
    address for a job's stream, a tenant for a live list) holds more than `per_caller`, so
    that one caller cannot take every slot from the others."""

    def __init__(self, total: int, per_caller: int):
        self.total = total
        self.per_caller = per_caller
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def take(self, caller: str) -> Callable[[], None]:
        """A slot for `caller`, as the function that gives it back (once, however often it is
        called); TooManyStreams when the instance or the caller holds as many as it may."""
        with self._lock:
            if self._held.get(caller, 0) >= self.per_caller:
                raise TooManyStreams(
                    f"This caller holds {self.per_caller} open streams, as many as one caller may; "
                    "close one, or retry shortly"
                )
            if sum(self._held.values()) >= self.total:
                raise TooManyStreams()
            self._held[caller] = self._held.get(caller, 0) + 1
        given_back = threading.Event()

        def release() -> None:
            with self._lock:
                if given_back.is_set():
                    return
                given_back.set()
                left = self._held.pop(caller) - 1
                if left:
                    self._held[caller] = left

        return release


class JobStream:
    def __init__(
        self,
        pool: Pool,
        listener: JobEvents,
        settings: Settings,
        job_body: Callable[[Job], dict],
        clock: Callable[[], float] = time.monotonic,
    ):
        self.pool = pool
        self.listener = listener
        self.settings = settings
        self.job_body = job_body
        self.clock = clock
        self.slots = StreamSlots(settings.max_open_streams, settings.max_streams_per_caller)

    def _read(self, job_id: str, after_seq: int) -> list[Event]:
        with self.pool.session() as session:
            return queue.list_events(session, job_id, after_seq, EVENTS_PER_READ)

    def _job(self, job_id: str) -> Job:
        with self.pool.session() as session:
            return queue.get_job(session, job_id)

    def events(
        self,
        job: Job,
        after_seq: int,
        fresh: bool,
        release: Callable[[], None],
        connected: Callable[[], bool] = lambda: True,
    ) -> Iterator[str]:
        """The stream's text, chunk by chunk. `job` was read by the caller (it 404s first), and
        the caller took a slot (`release` gives it back, from StreamSlots.take); the stream
        gives it back when it ends or is closed, even if it never started, or when `connected`
        says the client went away."""
        return _ReleasingStream(self._events(job, after_seq, fresh, connected), release)

    def _wait(self, job_id: str, version: int, timeout: float, connected: Callable[[], bool]) -> bool | None:
        """Wait for a change (True) or the timeout (False), looking at the client every
        LIVENESS_CHECK_SECONDS; None when it went away."""
        deadline = self.clock() + timeout
        while True:
            left = deadline - self.clock()
            if self.listener.wait_for_change(job_id, version, max(min(LIVENESS_CHECK_SECONDS, left), 0.0)) != version:
                return True
            if not connected():
                return None
            if left <= LIVENESS_CHECK_SECONDS:
                return False

    def _events(self, job: Job, after_seq: int, fresh: bool, connected: Callable[[], bool]) -> Iterator[str]:
        settings = self.settings
        started = last_write = self.clock()
        yield f"retry: {settings.stream_retry_ms}\n\n"
        if fresh:
            yield sse("snapshot", {**self.job_body(job), "lastEventSeq": job.last_event_seq})
        self.listener.start()
        with self.listener.watching(job.id):
            try:
                while True:
                    version = self.listener.version(job.id)
                    finished = False
                    batch = self._read(job.id, after_seq)
                    for event in batch:
                        yield sse(event.kind, event_body(event), event.seq)
                        after_seq = event.seq
                        last_write = self.clock()
                        finished = finished or is_terminal_event(event)
                    if finished:
                        final = self._job(job.id)
                        yield sse("done", self.job_body(final), final.last_event_seq)
                        return
                    if len(batch) == EVENTS_PER_READ:
                        continue  # more are waiting: no need to sleep
                    remaining = settings.stream_max_seconds - (self.clock() - started)
                    if remaining <= 0:
                        yield ": stream time limit reached; reconnect with Last-Event-ID\n\n"
                        return
                    # With the listener up, wake on its signal; without it, poll.
                    patience = (
                        settings.stream_keepalive_seconds if self.listener.healthy else settings.stream_poll_seconds
                    )
                    changed = self._wait(job.id, version, min(patience, remaining), connected)
                    if changed is None:
                        return  # the client went away: its slot and thread are free now
                    if not changed and self.clock() - last_write >= settings.stream_keepalive_seconds:
                        yield ": keep-alive\n\n"
                        last_write = self.clock()
            except DatabaseUnavailable:
                yield ": the job database is unavailable; reconnect with Last-Event-ID\n\n"
