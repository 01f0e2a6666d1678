"""Following a job in a terminal: a progress bar, the current step, and the log lines."""

from __future__ import annotations

import sys

from client.api import JobQueueClient

BAR_WIDTH = 30


def bar(progress: int) -> str:
    filled = round(BAR_WIDTH * progress / 100)
    return "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + f"] {progress:3d}%"


def follow_in_terminal(client: JobQueueClient, job_id: str, out=sys.stdout) -> int:
    """Print the job's life as it happens; exit status 0 when it completed."""
    progress, step, final = 0, "Queued", None
    for event in client.follow(job_id):
        data = event.data
        if event.event == "log":
            out.write(f"  {data.get('level', 'info'):7s} {data.get('message')}\n")
        elif event.event == "snapshot":
            continue  # the current state; the replayed events that follow tell the story
        elif event.event in ("status", "progress"):
            progress = data.get("progress", progress)
            step = data.get("currentStep") or step
            status = data.get("jobStatus")
            suffix = f" ({status})" if status else ""
            message = f" - {data['message']}" if data.get("message") else ""
            out.write(f"{bar(progress)} {step}{suffix}{message}\n")
        elif event.event == "done":
            final = data
        out.flush()
    if final is None:
        final = client.status(job_id)
    out.write(f"Job {job_id} {final['jobStatus']}\n")
    if final.get("error"):
        out.write(f"Error: {final['error']}\n")
    return 0 if final["jobStatus"] == "completed" else 1
