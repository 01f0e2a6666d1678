"""A job's live status as Server-Sent Events, resumable from any event sequence number.

    retry: <ms>                 reconnect delay hint
    event: snapshot             the job as it is now (fresh connections only; no id)
    id: <seq> / event: <kind>   every event after the client's Last-Event-ID, in order:
                                status, progress, log, preview ...
    : keep-alive                a comment every STREAM_KEEPALIVE_SECONDS of silence
    event: done                 the finished job, after which the stream closes

A stream also closes after STREAM_MAX_SECONDS (below the function's timeout); the client
reconnects with Last-Event-ID and gets exactly the events it missed. Database connections
are borrowed per query, never held for the life of a stream. The loop (time limit,
keep-alive, polling, the client's check) is shared/web/sse.py's; this is what it follows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from shared.core import queue
from shared.core.db import Pool
from shared.core.jobs import TERMINAL_STATUSES, Job, iso
from shared.core.notifier import JobEvents
from shared.core.queue import Event
from shared.core.settings import Settings
from shared.web.sse import Next, Streams, StreamSlots, sse

EVENTS_PER_READ = 500


def event_body(event: Event) -> dict:
    return {"seq": event.seq, "kind": event.kind, "at": iso(event.created_at), **event.data}


def is_terminal_event(event: Event) -> bool:
    return event.kind == "status" and event.data.get("jobStatus") in TERMINAL_STATUSES


class _JobFeed:
    """One job's events after `after_seq`, in order, then `done` when it finished."""

    resume = "reconnect with Last-Event-ID"

    def __init__(self, stream: JobStream, job: Job, after_seq: int, fresh: bool):
        self.stream = stream
        self.job = job
        self.after_seq = after_seq
        self.fresh = fresh
        self.version = 0

    def open(self) -> AbstractContextManager[None]:
        return self.stream.listener.watching(self.job.id)

    def send(self) -> tuple[list[str], Next]:
        chunks = []
        if self.fresh:
            self.fresh = False
            chunks.append(sse("snapshot", {**self.stream.job_body(self.job), "lastEventSeq": self.job.last_event_seq}))
        # The change counter is read before the events: a change while they are read wakes the next wait.
        self.version = self.stream.listener.version(self.job.id)
        batch = self.stream.read(self.job.id, self.after_seq)
        for event in batch:
            chunks.append(sse(event.kind, event_body(event), event.seq))
            self.after_seq = event.seq
        if any(is_terminal_event(event) for event in batch):
            final = self.stream.job(self.job.id)
            chunks.append(sse("done", self.stream.job_body(final), final.last_event_seq))
            return chunks, Next.END
        return chunks, Next.READ if len(batch) == EVENTS_PER_READ else Next.WAIT

    def wait(self, timeout: float) -> bool:
        return self.stream.listener.wait_for_change(self.job.id, self.version, timeout) != self.version


class JobStream(Streams):
    def __init__(self, pool: Pool, listener: JobEvents, settings: Settings, job_body: Callable[[Job], dict]):
        super().__init__(pool, listener, settings, job_body)
        self.slots = StreamSlots(settings.max_open_streams, settings.max_streams_per_caller)

    def read(self, job_id: str, after_seq: int) -> list[Event]:
        with self.pool.session() as session:
            return queue.list_events(session, job_id, after_seq, EVENTS_PER_READ)

    def job(self, job_id: str) -> Job:
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
        the caller took a slot (`release` gives it back, from StreamSlots.take)."""
        return self.loop.run(_JobFeed(self, job, after_seq, fresh), release, connected)
