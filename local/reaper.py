"""Every process the harness starts ends with it, however the harness ends.

A normal stop (Ctrl-C, SIGTERM handled, the end of a test) stops each server it started. A
harness killed outright (SIGKILL, an unhandled SIGTERM, a crash before its cleanup) runs no
cleanup at all, and its servers run in sessions of their own (so that a terminal's Ctrl-C
does not reach them before the harness stops them in order): they would run on with their
parent gone. So each harness process has a reaper, a small process that reads, on a pipe, what
the harness has started and since stopped. The kernel closes the pipe when the harness process
ends, whichever way; the reaper then reads end-of-file and ends whatever is still registered:
SIGTERM (or the signal registered, e.g. SIGQUIT for PostgreSQL's immediate shutdown), and
SIGKILL to what is left five seconds later.

A pipe rather than PR_SET_PDEATHSIG: that fires when the *thread* that started the child ends,
and the harness starts servers from threads (a fault replacing an instance, a test's helper).
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import sys
import threading

# Lines on stdin: "group <pgid> <signal>" or "pid <pid> <signal>" registers; "forget <kind>
# <id>" unregisters. At end-of-file: signal every registered one, then SIGKILL after a grace.
REAPER = r"""
import os, signal, sys, time
watched = {}
for line in sys.stdin:
    verb, kind, ident, *rest = line.split()
    if verb == "watch":
        watched[(kind, int(ident))] = int(rest[0])
    else:
        watched.pop((kind, int(ident)), None)

def send(kind, ident, sig):
    try:
        (os.killpg if kind == "group" else os.kill)(ident, sig)
        return True
    except OSError:
        return False

alive = [key for key, sig in watched.items() if send(*key, sig)]
deadline = time.monotonic() + 5.0
while alive and time.monotonic() < deadline:
    time.sleep(0.1)
    alive = [key for key in alive if send(*key, 0)]
for key in alive:
    send(*key, signal.SIGKILL)
"""

_lock = threading.Lock()
_reaper: subprocess.Popen | None = None
_owner: int | None = None  # the pid that started it (a forked child needs its own)


def _tell(line: str) -> None:
    global _reaper, _owner
    with _lock:
        if _reaper is None or _owner != os.getpid() or _reaper.poll() is not None:
            # A session of its own: a Ctrl-C to the harness's process group must not end it
            # before the harness has stopped what it started. cwd "/": it outlives temporary trees.
            _reaper = subprocess.Popen(
                [sys.executable, "-c", REAPER], stdin=subprocess.PIPE, cwd="/", start_new_session=True
            )
            _owner = os.getpid()
            atexit.register(_finish, _reaper)
        _reaper.stdin.write(f"{line}\n".encode())
        _reaper.stdin.flush()


def _finish(process: subprocess.Popen) -> None:
    """At a normal exit: end-of-file now, and wait while it ends anything not stopped."""
    if _owner == os.getpid():
        process.stdin.close()
        process.wait(30)


def watch_group(pgid: int, sig: int = signal.SIGTERM) -> None:
    """End this process group (a server started with start_new_session) if the harness ends first."""
    _tell(f"watch group {pgid} {int(sig)}")


def watch_pid(pid: int, sig: int = signal.SIGTERM) -> None:
    _tell(f"watch pid {pid} {int(sig)}")


def forget_group(pgid: int) -> None:
    """It stopped: its id may be reused by another process, which must not be signalled."""
    _tell(f"forget group {pgid}")


def forget_pid(pid: int) -> None:
    _tell(f"forget pid {pid}")


def group_members(pgid: int) -> list[int]:
    """The live processes in a process group (Linux's /proc): what a stop must leave empty."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp, ...
            members.append(int(name))
    return members


def popen_tied(command: list[str], sig: int = signal.SIGTERM, **options) -> subprocess.Popen:
    """Start a child harness (make dev under a test, a campaign in a planted copy of the tree)
    that ends with this process: in a session of its own (so that a Ctrl-C here stops it
    through our cleanup, in order), watched by the reaper, which sends it `sig` (its handler
    stops what it started) if we end first. Call forget_group(child.pid) once it has ended."""
    child = subprocess.Popen(command, start_new_session=True, **options)
    watch_group(child.pid, sig)
    return child


def run_tied(command: list[str], **options) -> int:
    """Run a child harness to its end (popen_tied); SIGTERM to it if we stop first."""
    child = popen_tied(command, **options)
    try:
        return child.wait()
    finally:
        if child.poll() is None:
            child.terminate()
            child.wait()
        forget_group(child.pid)
