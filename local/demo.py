"""make demo: bring the local stack up, enqueue a job, follow it live, print the result, and
shut everything down. Uses its own throwaway database and free ports, so it can run beside
`make dev`."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from client.api import JobQueueClient
from client.render import follow_in_terminal
from local import postgres
from local.stack import DEV_TOKEN, FUNCTIONS, Stack

DEMO_JOB = {"kind": "demo", "steps": 5, "stepSeconds": 0.4}


def main() -> int:
    logs = Path(tempfile.mkdtemp(prefix="jobqueue-demo-"))
    ports = {name: postgres.free_port() for name in FUNCTIONS}
    print("Starting PostgreSQL and the five functions...", flush=True)
    with Stack(persistent=False, ports=ports, log_dir=logs) as stack:
        client = JobQueueClient(
            enqueue_url=stack.url("enqueue"),
            status_url=stack.url("status"),
            cancel_url=stack.url("cancel"),
            token=DEV_TOKEN,
        )
        job = client.enqueue(DEMO_JOB)
        print(f"Enqueued job {job['id']}; following {job['streamUrl']}\n", flush=True)
        code = follow_in_terminal(client, job["id"])
        final = client.status(job["id"])
        print("\nResult:")
        print(json.dumps(final["result"], indent=2))
    print(f"\nStopped. Function logs: {logs}")
    return code


if __name__ == "__main__":
    sys.exit(main())
