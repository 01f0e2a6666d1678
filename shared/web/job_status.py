"""The JSON status of one job (GET status?id=): the job, its log lines, and what its stream
shows beside them, so that a poller sees what a follower sees (issue 23): the newest status
message, the newest preview (its text so far, and its format), and the number of the job's
last event (a poller that turns back to the stream resumes after it, and is sent nothing it
has already shown). The core reads it (operations.read_job_with_log_lines); this shapes it."""

from __future__ import annotations

from collections.abc import Callable

from shared.core.operations import JobWithLogLines


def status_body(read: JobWithLogLines, job_body: Callable[..., dict]) -> dict:
    preview = read.preview if isinstance(read.preview, dict) and isinstance(read.preview.get("content"), str) else {}
    return job_body(
        read.job,
        logs=read.log_lines,
        message=read.message,
        preview=preview.get("content"),
        previewFormat=preview.get("format"),
        lastEventSeq=read.job.last_event_seq,
    )
