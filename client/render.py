"""Following a job in a terminal: a progress bar, the current step, and the log lines."""

from __future__ import annotations

import sys

from client.api import JobQueueClient

BAR_WIDTH = 30


def bar(progress: int) -> str:
    filled = round(BAR_WIDTH * progress / 100)
    return "[" + "#" * filled + "-" * (BAR_WIDTH - filled) + f"] {progress:3d}%"


def follow_in_terminal(client: JobQueueClient, job_id: str, out=None) -> int:
    """Print the job's life as it happens; exit status 0 when it completed."""
    out = out or sys.stdout  # at call time: the sys.stdout of import time may since be closed
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


def _percentiles(figures: dict | None, names: tuple[str, ...]) -> str:
    if not figures:
        return "-"
    return "/".join(f"{figures[name]:.1f}" for name in names) + " s"


def render_stats(figures: dict) -> str:
    """The metrics view as a few lines for a terminal."""
    scope = f" (tenant {figures['tenant']})" if figures.get("tenant") else ""
    lines = [
        f"queued {figures['queued']}   scheduled {figures['scheduled']}   running {figures['running']}{scope}",
        f"oldest queued {figures['oldestQueuedAgeSeconds']:.1f} s   "
        f"oldest heartbeat {figures['oldestHeartbeatAgeSeconds']:.1f} s",
        f"finished in the last {figures['windowSeconds']} s, by kind:",
    ]
    if not figures["byKind"]:
        lines.append("  (none)")
        return "\n".join(lines)
    lines.append(
        f"  {'kind':<20} {'completed':>9} {'failed':>6} {'cancelled':>9}  {'wait p50/p95':<14} run p50/p95/p99"
    )
    for kind, row in figures["byKind"].items():
        wait = _percentiles(row["waitSeconds"], ("p50", "p95"))
        run = _percentiles(row["runSeconds"], ("p50", "p95", "p99"))
        lines.append(f"  {kind:<20} {row['completed']:>9} {row['failed']:>6} {row['cancelled']:>9}  {wait:<14} {run}")
    return "\n".join(lines)
