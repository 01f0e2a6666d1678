"""The one launcher of function servers: functions-framework serving one function, for the
local stack, the tests and the benchmarks.

The server is handed a socket that this process has already bound, instead of a port picked
free and bound later by the server: in between, another server could take that port, and a
readiness check would then be answered by the wrong server. Binding first also lets the
local stack know every function's URL before it starts any of them (enqueue needs the status
URL). functions-framework runs gunicorn, which takes a bound socket the way systemd hands
one over (socket activation: the socket as file descriptor 3, LISTEN_FDS=1 and LISTEN_PID
set to the server's own pid); a short bootstrap sets that up, then runs
`python -m functions_framework` as it would run from the command line.

The socket is bound but not listening until gunicorn listens on it, so "the port accepts a
connection" still means "the server is up", as it did when the server bound the port itself.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from local import reaper
from local.functions import REPO, function_source

HOST = "127.0.0.1"
LISTEN_FD = 3  # where socket activation expects the first socket (SD_LISTEN_FDS_START)
# How long a client may take to send a request's line and headers (REQUEST_READ_TIMEOUT_SECONDS;
# the same bound then applies to each read of its body and each write of the answer).
REQUEST_READ_TIMEOUT_SECONDS = 10.0

# Run in the server's own interpreter, so it works with any Python that has
# functions-framework (the repository's venv, or a bundle's fresh one).
#
# gunicorn's threaded worker gives a connection a thread as soon as its first byte arrives,
# then reads the request line and headers with no deadline: a client that sends half a line
# and waits holds that thread for ever, and THREADS such clients stall the instance. Deployed,
# Google's front end stands between clients and the instance (docs/security.md); locally, a
# watchdog shuts a connection whose request head is not in by the deadline: netguard's
# SocketDeadlines, one thread per worker, which the guard's own requests use too (a timer
# thread per request cost each request the thread's start, about 0.1 ms on a quiet machine).
BOOTSTRAP = f"""
import os, runpy, sys
fd = int(os.environ.pop("JOBQUEUE_LISTEN_FD"))
if fd != {LISTEN_FD}:
    os.dup2(fd, {LISTEN_FD})
    os.close(fd)
os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()))

READ_TIMEOUT = float(os.environ.get("REQUEST_READ_TIMEOUT_SECONDS") or {REQUEST_READ_TIMEOUT_SECONDS})
from gunicorn.workers import gthread
from shared.core.netguard import DEADLINES

_handle, _handle_request = gthread.ThreadWorker.handle, gthread.ThreadWorker.handle_request

def handle(self, conn):
    conn.jobqueue_head_due = DEADLINES.watch(conn.sock, READ_TIMEOUT)  # shut then: the blocked read returns
    try:
        return _handle(self, conn)
    finally:
        DEADLINES.cancel(conn.jobqueue_head_due)

def handle_request(self, req, conn):
    DEADLINES.cancel(conn.jobqueue_head_due)  # the head is in: never shut from here on
    conn.sock.settimeout(READ_TIMEOUT)
    return _handle_request(self, req, conn)

gthread.ThreadWorker.handle = handle
gthread.ThreadWorker.handle_request = handle_request

sys.argv[0] = "functions-framework"
runpy.run_module("functions_framework", run_name="__main__", alter_sys=True)
"""


def bind_port(port: int = 0, host: str = HOST, patience: float = 0.0) -> socket.socket:
    """A TCP socket bound to `port` (0: any free one), not yet listening. Binding a port that
    another server listens on fails with OSError (EADDRINUSE), at once or, with `patience`,
    once that server has not let go of it for that many seconds (a restart on the same port:
    a killed server's workers may still be exiting)."""
    deadline = time.monotonic() + patience
    while True:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # As gunicorn sets it: a restart may rebind a port whose old connections linger.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                raise
        time.sleep(0.1)


def wait_for_port(port: int, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    """Until something accepts connections on the port; RuntimeError if `process` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server for port {port} exited with status {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered on port {port} within {timeout:.0f} s")


@dataclass
class FunctionServer:
    name: str
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_until_serving(self, timeout: float = 30.0) -> FunctionServer:
        wait_for_port(self.port, timeout=timeout, process=self.process)
        return self

    def send(self, sig: int) -> None:
        """Signal the server and its gunicorn workers (its process group)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def wait_stopped(self, timeout: float = 10.0) -> None:
        """Wait for it to exit; SIGKILL if a graceful stop outlasts `timeout` (open streams).
        It returns once its workers are gone too: each holds a copy of the listening socket,
        and a worker outliving its master would keep the port from a restart."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.send(signal.SIGKILL)
            self.process.wait(timeout)
        deadline = time.monotonic() + timeout
        while self.leftovers():
            if time.monotonic() >= deadline:
                raise RuntimeError(f"{self.name}: processes {self.leftovers()} outlived SIGKILL")
            self.send(signal.SIGKILL)
            time.sleep(0.05)
        reaper.forget_group(self.process.pid)

    def leftovers(self) -> list[int]:
        """Its processes still alive (the server, its workers): none once it has stopped."""
        return reaper.group_members(self.process.pid)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        self.send(sig)
        self.wait_stopped(timeout)


def start_function(
    name: str,
    env: dict[str, str],
    *,
    sock: socket.socket | None = None,
    port: int = 0,
    bundle: Path | None = None,
    python: str | Path = sys.executable,
    output: IO[bytes] | int | None = None,  # a file, subprocess.DEVNULL, or None: this terminal
) -> FunctionServer:
    """Start functions-framework serving `name` on `sock` (or on a socket bound to `port`,
    0 for any free one). It does not wait: call `wait_until_serving()`.

    It serves functions/<name>/main.py from the repository, or, given `bundle` (an unpacked
    deploy bundle), main.py from that folder, the way Cloud Build runs it. `env` is the
    server's whole environment. The server gets a process group of its own, so
    that its gunicorn workers stop with it, as an instance's would; the reaper
    (local/reaper.py) ends that group if this process ends without stopping it.
    """
    sock = sock if sock is not None else bind_port(port)
    bound_port = sock.getsockname()[1]
    command = [str(python), "-c", BOOTSTRAP, "--target", name, "--host", HOST, "--port", str(bound_port)]
    if bundle is None:
        command += ["--source", str(function_source(name))]
    try:
        process = subprocess.Popen(
            command,
            cwd=bundle or REPO,
            env={**env, "JOBQUEUE_LISTEN_FD": str(sock.fileno())},
            pass_fds=(sock.fileno(),),
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            start_new_session=True,
        )
    finally:
        sock.close()  # the server holds it now; when it exits, the port is free again
    reaper.watch_group(process.pid)  # ended with this process, however this process ends
    return FunctionServer(name, bound_port, process)
