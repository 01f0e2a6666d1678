"""Every process the harness starts ends with it, however the harness ends: a harness killed
outright (SIGKILL, or SIGTERM with no handler) leaves no function server, worker or
PostgreSQL behind (local/reaper.py), whether it started them as the launcher does (make test,
dev, demo, browser-test, chaos, bench) or as make scale does; and the fault campaign's stop ends every process
instance it started, the ones its faults replaced included."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from bench.campaign.faults import ProcessInstances
from bench.campaign.run import stop_functions
from local.launcher import REPO
from local.reaper import forget_group, group_members, popen_tied
from local.stack import Stack

# A harness in miniature: a throwaway PostgreSQL and a function server on it (started as the
# make target named starts its servers), then it waits to be killed, after saying what it started.
HARNESS = """
import json, os, sys, time
from pathlib import Path
from local import postgres
server = postgres.throwaway_server()
env = {{**os.environ, "DATABASE_URL": server.url}}
{start}
function.wait_until_serving(60)
print(json.dumps({{"postmaster": server._pid, "function": function.pid, "datadir": str(server.datadir.parent)}}))
sys.stdout.flush()
time.sleep(600)
"""
STARTS = {
    # make test, dev, demo, browser-test, chaos and bench: the one launcher (local/launcher.py)
    "the launcher": """
from local.launcher import start_function
function = start_function("status", env, output=open(os.devnull, "wb"))
""",
    # make scale: its process instances
    "make scale": """
from types import SimpleNamespace
from bench.scale.monitor import Instance
function = Instance(SimpleNamespace(env=env), postgres.free_port(), 4, Path(os.environ["LOGS"])).server
""",
}


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("starter", list(STARTS))
def test_a_killed_harness_leaves_no_server_worker_or_database_behind(starter, sig, tmp_path):
    script = HARNESS.format(start=STARTS[starter])
    env = {**os.environ, "LOGS": str(tmp_path)}
    # Tied to this run (local/reaper.py): should this test fail, its harness still ends with us.
    harness = popen_tied([sys.executable, "-c", script], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
    try:
        started = json.loads(harness.stdout.readline())
    except json.JSONDecodeError:
        harness.kill()
        raise
    try:
        function = started["function"]
        assert alive(started["postmaster"])
        assert wait_until(lambda: len(group_members(function)) >= 2, 30)  # gunicorn's master and its worker
        harness.send_signal(sig)
        harness.wait(30)
        assert wait_until(lambda: not group_members(function) and not alive(started["postmaster"]), 30), (
            f"left behind: function group {group_members(function)}, postmaster alive: {alive(started['postmaster'])}"
        )
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
        forget_group(harness.pid)
        harness.stdout.close()
        end_what_is_left(started)
        shutil.rmtree(started["datadir"], ignore_errors=True)


def end_what_is_left(started: dict) -> None:
    """A failing run of the test must not leave behind what it caught being left behind."""
    with contextlib.suppress(ProcessLookupError):
        if group_members(started["function"]):
            os.killpg(started["function"], signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        if alive(started["postmaster"]):
            os.kill(started["postmaster"], signal.SIGQUIT)


def test_the_campaign_stops_every_process_instance_a_fault_replaced(database_url, tmp_path):
    stack = Stack.on_free_ports(database_url=database_url, scheduler=False, log_dir=tmp_path)
    instances = None
    try:
        stack.start()
        instances = ProcessInstances(stack.servers["process"], {**os.environ, **stack.env}, 2, tmp_path)
        for index in (0, 1):  # the kill_process_instance fault, on each instance
            instances.servers[index].stop(signal.SIGKILL)
            instances.replace(index)
        groups = [server.pid for server in instances.started] + [server.pid for server in stack.servers.values()]
    finally:
        stop_functions(stack, instances)
    left = {pgid: group_members(pgid) for pgid in groups}
    assert not any(left.values()), f"process groups with processes left after stop: {left}"
