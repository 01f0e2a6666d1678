"""make demo: bring the local stack up, enqueue a newsletter for the demo feeds, follow it
live, print the newsletter, and
shut everything down. With NEWSLETTER_WRITER=gemini (and no WRITER_BASE_URL), the newsletter
is written through the local Gemini emulator. Uses its own throwaway database and free ports, so it can run beside
`make dev`."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from client.api import JobQueueClient
from client.render import follow_in_terminal
from local.stack import DEV_TOKEN, Stack


def newsletter_request(source_ids: list[int]) -> dict:
    """The seed's request body, as an existing frontend sends it."""
    return {
        "dateRange": {"from": "2025-01-01", "to": "2025-01-07"},
        "selectedSources": source_ids,
        "outputFormat": "markdown",
    }


def main() -> int:
    logs = Path(tempfile.mkdtemp(prefix="jobqueue-demo-"))
    print("Starting PostgreSQL and the five functions...", flush=True)
    # NEWSLETTER_WRITER=gemini with no endpoint of its own: the model is the local emulator.
    emulated = os.environ.get("NEWSLETTER_WRITER") == "gemini" and not os.environ.get("WRITER_BASE_URL")
    stack = Stack.on_free_ports(persistent=False, tasks_port=0, log_dir=logs, gemini_port=0 if emulated else None)
    with stack:
        client = JobQueueClient(
            enqueue_url=stack.url("enqueue"),
            status_url=stack.url("status"),
            cancel_url=stack.url("cancel"),
            token=DEV_TOKEN,
        )
        job = client.enqueue(newsletter_request([source.id for source in stack.demo_sources]))
        print(f"Enqueued job {job['id']} (Cloud Task {job['dispatch']}); following {job['streamUrl']}\n", flush=True)
        code = follow_in_terminal(client, job["id"])
        final = client.status(job["id"])
        result = final["result"] or {}
        if "document" in result:
            print("\n" + "=" * 72 + "\n")
            print(result["document"])
            print("=" * 72)
            details = {key: value for key, value in result.items() if key != "document"}
            print(json.dumps(details, indent=2))
    print(f"\nStopped. Function logs: {logs}")
    return code


if __name__ == "__main__":
    sys.exit(main())
