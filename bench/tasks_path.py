"""The Cloud Tasks path, enqueue to handler start, and where its time goes, with the emulator's
own share reported apart (the emulator is ours: speeding it up would prove nothing about
Cloud Tasks).

A stack with Cloud Tasks on (local/tasks_emulator.py, in this process, and the functions as
real servers). Per job, one client, one at a time:

    t0 client sends the enqueue --> the emulator accepts the task (created)
       --> the emulator begins its delivery to process (sent_at) --> the handler starts (t)

- push: t0 to created (the enqueue function's request, its insert and commit, and the push);
- emulator: created to sent_at (its wait, its wake-up and its thread), the emulator's own;
- process: sent_at to the handler's start (the delivery, the process function's request,
  the named claim, the runner's start), the functions' other share;
- answer: t0 to the enqueue's answer, as its caller waits for it (not on the path to the
  handler: an answer held back, by Nagle's algorithm say, shows here alone).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import httpx

from bench.common import AUTH, HANDLERS, median
from local.stack import Stack
from local.tasks_emulator import TasksEmulator
from shared.core.dispatch import task_id

QUEUE = "projects/local/locations/local/queues/jobs"
WARM_UP = 5


def _tasks_env(emulator: TasksEmulator, process_url: str) -> dict[str, str]:
    return {
        "JOB_HANDLERS": HANDLERS,
        "ENQUEUE_KINDS": "*",
        "TASKS_QUEUE": QUEUE,
        "PROCESS_URL": process_url,
        "CLOUD_TASKS_EMULATOR_HOST": emulator.endpoint,
        "RATE_LIMIT_ENQUEUE": "0",
        "RATE_LIMIT_JOBS": "0",
        "RATE_LIMIT_STATUS": "0",
    }


def _started_at(http: httpx.Client, stack: Stack, job_id: str) -> float:
    """The handler's own clock at its start, from its log line."""
    job = http.get(stack.url("status"), params={"id": job_id}).json()
    lines = [line["message"] for line in job.get("logs", []) if line["message"].startswith("t=")]
    assert lines, f"job {job_id} did not start through the Tasks path: {job}"
    return float(lines[0][2:])


def _one(http: httpx.Client, stack: Stack, emulator: TasksEmulator) -> dict:
    sent = time.time()
    answer = http.post(stack.url("enqueue"), json={"kind": "start_clock"}, headers=AUTH)
    answered = time.time()
    assert answer.status_code == 202 and answer.json().get("dispatch") == "sent", answer.text
    job_id = answer.json()["id"]
    # Found by name, not by reading every task's body while the delivery is in flight, and
    # waited for in this process, not by polling status: either would take CPU from the path
    # it times, which PgQueuer's worker, read from a pipe, does not.
    task = emulator.tasks[f"{QUEUE}/tasks/{task_id(SimpleNamespace(id=job_id, attempts=0), 'run')}"]
    assert task.dispatched.wait(30), f"job {job_id}: its task was not delivered"
    started = _started_at(http, stack, job_id)
    delivery = task.dispatches[0].sent_at
    return {
        "total": (started - sent) * 1000,
        "push": (task.created - sent) * 1000,
        "emulator": (delivery - task.created) * 1000,
        "process": (started - delivery) * 1000,
        "answer": (answered - sent) * 1000,
    }


def measure(url: str, samples: int) -> dict:
    emulator = TasksEmulator(allow_loopback=True).start()
    stack = Stack.on_free_ports(database_url=url, scheduler=False, log_dir=Path(tempfile.mkdtemp(prefix="tasks-")))
    stack.extra_env = _tasks_env(emulator, stack.url("process"))
    try:
        stack.start()
        with httpx.Client(timeout=30) as http:
            for _ in range(WARM_UP):
                _one(http, stack, emulator)
            runs = [_one(http, stack, emulator) for _ in range(samples)]
    finally:
        stack.stop()
        emulator.stop()
    figures = {
        part: round(median([run[part] for run in runs]), 2)
        for part in ("total", "push", "emulator", "process", "answer")
    }
    figures["total_less_emulator"] = round(median([run["total"] - run["emulator"] for run in runs]), 2)
    figures["samples"] = samples
    return figures
