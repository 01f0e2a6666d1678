"""Cold start of each function: the import time of its module, the time from starting
functions-framework (by the one launcher, local/launcher.py) to its first answer, and the
resident memory of the server (master and worker). Also the import time of
functions-framework and Flask alone, the part of every function's import that is not ours;
and the first enqueue with Cloud Tasks on, end to end from a fresh server's start, and step
by step (first_enqueue_steps)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.common import AUTH, env_for, median
from local.functions import FUNCTIONS, REPO, function_source
from local.launcher import bind_port, start_function
from local.stack import DEV_TOKEN

UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


def _timed_import(script: str, env: dict[str, str]) -> float:
    """Milliseconds a fresh interpreter spends running `script`, which prints its own timing."""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip()) * 1000


def _module_import_script(name: str) -> str:
    return (
        "import time, importlib.util, sys; t = time.perf_counter();"
        f"spec = importlib.util.spec_from_file_location('main', {str(function_source(name))!r});"
        "m = importlib.util.module_from_spec(spec); sys.modules['main'] = m; spec.loader.exec_module(m);"
        "print(time.perf_counter() - t)"
    )


FRAMEWORK_IMPORT = (
    "import time; t = time.perf_counter(); import functions_framework, flask; print(time.perf_counter() - t)"
)


def _first_answer(name: str, url: str) -> int:
    """A request each function answers without side effects worth undoing."""
    if name == "status":
        return httpx.get(url, params={"id": UNKNOWN_ID}, timeout=30).status_code
    if name in ("enqueue", "cancel"):
        return httpx.post(url, json={"kind": "noop", "id": UNKNOWN_ID}, headers=AUTH, timeout=30).status_code
    return httpx.post(url, timeout=30).status_code


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def _rss_mb(pid: int) -> float:
    total = 0
    pids = [pid] + [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent(int(p)) == pid]
    for each in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def _one_start(name: str, env: dict[str, str]) -> tuple[float, float]:
    """(milliseconds to the first answer, resident MB) for one fresh server."""
    sock = bind_port()
    started = time.perf_counter()
    server = start_function(name, env, sock=sock, output=subprocess.DEVNULL)
    try:
        server.wait_until_serving()
        answered = _first_answer(name, server.url)
        elapsed = (time.perf_counter() - started) * 1000
        assert answered < 500, f"{name} answered {answered}"
        return elapsed, _rss_mb(server.pid)
    finally:
        server.stop()


def _env(url: str) -> dict[str, str]:
    return {**os.environ, **env_for(url), "API_TOKEN": DEV_TOKEN}


def framework_import_ms(url: str, repeats: int) -> int:
    return round(median([_timed_import(FRAMEWORK_IMPORT, _env(url)) for _ in range(repeats)]))


def measure(url: str, repeats: int) -> list[dict]:
    env = _env(url)
    rows = []
    for name in FUNCTIONS:
        imports = [_timed_import(_module_import_script(name), env) for _ in range(repeats)]
        starts = [_one_start(name, env) for _ in range(repeats)]
        rows.append(
            {
                "function": name,
                "import_ms": round(median(imports)),
                "first_answer_ms": round(median([ready for ready, _ in starts])),
                "rss_mb": round(median([rss for _, rss in starts])),
            }
        )
        print(f"  cold start {rows[-1]}", flush=True)
    return rows


def _tasks_env(url: str, emulator) -> dict[str, str]:
    return {
        **_env(url),
        "ENQUEUE_KINDS": "*",
        "TASKS_QUEUE": "projects/local/locations/local/queues/jobs",
        "PROCESS_URL": "http://127.0.0.1:9/",  # nothing listens: only the push is measured
        "CLOUD_TASKS_EMULATOR_HOST": emulator.endpoint,
    }


def first_enqueue_with_tasks_ms(url: str, repeats: int) -> int:
    """A fresh enqueue server with Cloud Tasks on (the emulator): milliseconds from starting it
    to the answer of its first enqueue, whose task push builds the Tasks client unless the
    instance built it while starting."""
    from local.tasks_emulator import TasksEmulator  # noqa: PLC0415

    emulator = TasksEmulator(allow_loopback=True).start()
    env = _tasks_env(url, emulator)
    timings = []
    try:
        for _ in range(repeats):
            sock = bind_port()
            started = time.perf_counter()
            server = start_function("enqueue", env, sock=sock, output=subprocess.DEVNULL)
            try:
                server.wait_until_serving()
                answer = httpx.post(server.url, json={"kind": "noop"}, headers=AUTH, timeout=30)
                timings.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 202 and answer.json()["dispatch"] == "sent", answer.text
            finally:
                server.stop()
    finally:
        emulator.stop()
    return round(median(timings))


# The steps of a fresh enqueue instance's first enqueue with Cloud Tasks on, one after another in
# one fresh interpreter, each timed in wall and CPU milliseconds (the process's CPU: on a shared
# machine the wall time also measures the neighbours). Run as a script; prints JSON.
FIRST_ENQUEUE_STEPS = """
import json, sys, time
started = time.time()
steps = []
def step(name, then=[time.perf_counter(), time.process_time()]):
    now = [time.perf_counter(), time.process_time()]
    steps.append({"step": name, "wall_ms": round((now[0] - then[0]) * 1000, 1), "cpu_ms": round((now[1] - then[1]) * 1000, 1)})
    then[:] = now
import functions_framework, flask
step("functions-framework and Flask imported")
app = functions_framework.create_app(target="enqueue", source=sys.argv[1])
service = sys.modules["main"].service
step("the enqueue function imported (settings, kinds, the pool and dispatcher, no connection)")
service.dispatcher._tasks_client()
step("the Cloud Tasks client imported and built")
with service.pool.session() as session:
    session.run_sql("SELECT 1")
step("the first pooled connection")
service._migrate_directly()
step("the migrations check (MIGRATE_ON_START, a schema already up to date)")
answer = app.test_client().post("/", json={"kind": "noop"}, headers={"Authorization": "Bearer " + sys.argv[2]})
assert answer.status_code == 202 and answer.get_json()["dispatch"] == "sent", answer.get_data()
step("the first enqueue (rate limit count, insert, commit, task push)")
import google.cloud.sql.connector
step("the Cloud SQL connector's import, which a deployed instance adds (on its first connection)")
print(json.dumps({"started": started, "steps": steps}))
"""


def first_enqueue_steps(url: str, repeats: int) -> list[dict]:
    """Where a fresh enqueue instance's first enqueue with Cloud Tasks on spends its time: the
    interpreter's start, then each step of FIRST_ENQUEUE_STEPS; medians of `repeats` runs."""
    from local.tasks_emulator import TasksEmulator  # noqa: PLC0415

    emulator = TasksEmulator(allow_loopback=True).start()
    env = _tasks_env(url, emulator)
    runs = []
    try:
        for _ in range(repeats):
            spawned = time.time()
            out = subprocess.run(
                [sys.executable, "-c", FIRST_ENQUEUE_STEPS, str(function_source("enqueue")), DEV_TOKEN],
                cwd=REPO, env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            found = json.loads(out.stdout.strip().splitlines()[-1])
            start = {"step": "the interpreter's start", "wall_ms": (found["started"] - spawned) * 1000, "cpu_ms": None}
            runs.append([start, *found["steps"]])
    finally:
        emulator.stop()
    return [
        {
            "step": steps[0]["step"],
            "wall_ms": round(median([step["wall_ms"] for step in steps])),
            "cpu_ms": None if steps[0]["cpu_ms"] is None else round(median([step["cpu_ms"] for step in steps])),
        }
        for steps in zip(*runs, strict=True)
    ]
