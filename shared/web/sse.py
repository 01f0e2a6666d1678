"""Server-Sent Events: the wire format, and the one loop every stream runs.

    retry: <ms>                 reconnect delay hint, first
    ...                         what the feed sends (a job's events, a list's snapshot and changes)
    : keep-alive                a comment every STREAM_KEEPALIVE_SECONDS of silence

A stream closes after STREAM_MAX_SECONDS (below the function's timeout), when its feed says
it is over, when the job database is unavailable (each with a comment that says how to
resume), or as soon as its client is seen gone. The loop owns the time limit, the keep-alive,
the listener's health (wake on its notifications while it is up, poll while it is down), the
check on the client and the open-stream slot; a feed (shared/web/job_stream.py for one job,
shared/web/job_list.py for a job list) owns what it reads and what it sends.
"""

from __future__ import annotations

import enum
import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

from shared.core.db import Pool
from shared.core.errors import DatabaseUnavailable, TooManyStreams
from shared.core.jobs import Job
from shared.core.notifier import JobEvents
from shared.core.settings import Settings

# How often a silent stream looks at its socket: a client that went away gives back its
# slot (and its thread) within about this long, not at the next keep-alive write.
LIVENESS_CHECK_SECONDS = 1.0


def sse(event: str, data: dict, event_id: int | None = None) -> str:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


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


class Next(enum.Enum):
    """What the loop does after a feed has sent what was new."""

    WAIT = "wait"  # for a change, a keep-alive or the time limit
    READ = "read"  # at once: more is waiting
    END = "end"  # the stream is over (the job finished)


class Feed(Protocol):
    """One stream's source. Per stream (it keeps the stream's place); the loop calls it from
    one thread."""

    # How a client that is told the stream ended picks up where it left off.
    resume: str

    def open(self) -> AbstractContextManager[None]:
        """Follow the listener's notifications for this stream, for the stream's life."""

    def send(self) -> tuple[list[str], Next]:
        """The chunks for what is new since the last call (everything there is, on the first)."""

    def wait(self, timeout: float) -> bool:
        """Block until something the stream sends may have changed (True) or `timeout` passes."""


class StreamLoop:
    """Runs feeds as event streams, for one instance's listener and settings."""

    def __init__(self, listener: JobEvents, settings: Settings, clock: Callable[[], float] = time.monotonic):
        self.listener = listener
        self.settings = settings
        self.clock = clock

    def run(
        self, feed: Feed, release: Callable[[], None], connected: Callable[[], bool] = lambda: True
    ) -> Iterator[str]:
        """The stream's text, chunk by chunk. The caller took an open-stream slot (`release`
        gives it back, from StreamSlots.take): the stream gives it back when it ends or is
        closed, even if it never started, or when `connected` says the client went away."""
        return _ReleasingStream(self._chunks(feed, connected), release)

    def _chunks(self, feed: Feed, connected: Callable[[], bool]) -> Iterator[str]:
        settings = self.settings
        started = last_write = self.clock()
        yield f"retry: {settings.stream_retry_ms}\n\n"
        self.listener.start()
        with feed.open():
            try:
                while True:
                    chunks, then = feed.send()
                    yield from chunks
                    if chunks:
                        last_write = self.clock()
                    if then is Next.END:
                        return
                    if then is Next.READ:
                        continue
                    remaining = settings.stream_max_seconds - (self.clock() - started)
                    if remaining <= 0:
                        yield f": stream time limit reached; {feed.resume}\n\n"
                        return
                    # With the listener up, wake on its notifications; without it, poll.
                    patience = (
                        settings.stream_keepalive_seconds if self.listener.healthy else settings.stream_poll_seconds
                    )
                    if not self._wait_while_connected(feed, min(patience, remaining), connected):
                        return  # the client went away: its slot and thread are free now
                    if self.clock() - last_write >= settings.stream_keepalive_seconds:
                        yield ": keep-alive\n\n"
                        last_write = self.clock()
            except DatabaseUnavailable:
                yield f": the job database is unavailable; {feed.resume}\n\n"

    def _wait_while_connected(self, feed: Feed, timeout: float, connected: Callable[[], bool]) -> bool:
        """Wait for a change or the timeout, looking at the client every LIVENESS_CHECK_SECONDS:
        False as soon as it went away."""
        deadline = self.clock() + timeout
        while True:
            left = deadline - self.clock()
            if feed.wait(max(min(LIVENESS_CHECK_SECONDS, left), 0.0)):
                return True
            if not connected():
                return False
            if left <= LIVENESS_CHECK_SECONDS:
                return True


class Streams:
    """One kind of stream on an instance: what its feeds read with (the pool, how a job is
    shown, the clock) and the loop they run in."""

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
        self.job_body = job_body
        self.clock = clock
        self.loop = StreamLoop(listener, settings, clock)
