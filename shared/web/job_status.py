"""The JSON status of one job (GET status?id=): the job, its log lines, and what its stream
shows beside them, so that a poller sees what a follower sees (issue 23): the newest status
message, the newest preview (its text so far, and its format), and the number of the job's
last event (a poller that turns back to the stream resumes after it, and is sent nothing it
has already shown)."""

from __future__ import annotations

from collections.abc import Callable

from shared.core import queue
from shared.core.db import Pool
from shared.core.jobs import Job, iso


def log_lines(events: list[queue.Event]) -> list[dict]:
    return [
        {"seq": e.seq, "level": e.data.get("level", "info"), "message": e.data.get("message"), "at": iso(e.created_at)}
        for e in events
        if e.kind == "log"
    ]


def status_body(pool: Pool, job: Job, job_body: Callable[..., dict]) -> dict:
    with pool.session() as session:
        events = queue.list_events(session, job.id)
        message, preview = queue.latest_message_and_preview(session, job.id)
    preview = preview if isinstance(preview, dict) and isinstance(preview.get("content"), str) else {}
    return job_body(
        job,
        logs=log_lines(events),
        message=message,
        preview=preview.get("content"),
        previewFormat=preview.get("format"),
        lastEventSeq=job.last_event_seq,
    )
