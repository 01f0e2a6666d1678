"""The local stack: PostgreSQL, the five functions as real functions-framework servers, and a
stand-in for Cloud Scheduler. `make dev` runs it until Ctrl-C; `make demo` and the
end-to-end tests start and stop it around their work.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path

import httpx

from local import postgres
from local.feedserver import seed_demo_sources, serve_feeds
from local.functions import FUNCTIONS
from local.gemini_emulator import GeminiEmulator
from local.launcher import FunctionServer, bind_port, start_function, wait_for_port  # noqa: F401 (wait_for_port: for callers)
from local.tasks_emulator import TasksEmulator
from shared.core.db import open_session
from shared.core.migrate import apply_migrations

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PORTS = dict(zip(FUNCTIONS, range(8081, 8086)))
DEV_TOKEN = "dev-token"
# Seconds a function may take to finish after SIGTERM (Cloud Run gives 10) before SIGKILL.
# gunicorn keeps the listening socket open while requests finish: status's requests are
# streams, which could last minutes and which resume where they stopped (Last-Event-ID), so
# status gets one second and does not keep its port from a restart.
STOP_GRACE = {"status": 1.0}


class Scheduler(threading.Thread):
    """Cloud Scheduler's part, locally: POST process every `every` seconds (up to `workers`
    invocations in flight, since each holds its request until its job ends) and sweep
    every `sweep_every` seconds."""

    def __init__(
        self, process_url: str, sweep_url: str, every: float = 1.0, sweep_every: float = 60.0, workers: int = 2
    ):
        super().__init__(name="local-scheduler", daemon=True)
        self.process_url, self.sweep_url = process_url, sweep_url
        self.every, self.sweep_every = every, sweep_every
        self.slots = threading.Semaphore(workers)
        self.stopped = threading.Event()

    def _call(self, url: str, release: bool) -> None:
        try:
            httpx.post(url, timeout=3600)
        except httpx.HTTPError:
            pass  # the function may be restarting; the next tick tries again
        finally:
            if release:
                self.slots.release()

    def run(self) -> None:
        next_sweep = time.monotonic() + self.sweep_every
        while not self.stopped.wait(self.every):
            if self.slots.acquire(blocking=False):
                threading.Thread(target=self._call, args=(self.process_url, True), daemon=True).start()
            if time.monotonic() >= next_sweep:
                self._call(self.sweep_url, False)
                next_sweep = time.monotonic() + self.sweep_every


@dataclass
class Stack:
    database_url: str | None = None  # None: start a local PostgreSQL
    persistent: bool = True  # keep the local PostgreSQL's data between runs (make dev)
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    extra_env: dict[str, str] = field(default_factory=dict)
    scheduler: bool = True
    feeds_port: int = 8086  # the demo feeds' server (0: any free port)
    feeds_relative_to_today: bool = False  # make dev: the feeds' week ends today (local/feedserver.py)
    tasks_port: int | None = None  # run the Cloud Tasks emulator on this port (make dev: 8123; 0: any)
    tasks_max_concurrent: int = 10  # the emulated queue's max_concurrent_dispatches
    gemini_port: int | None = None  # write newsletters with the Gemini emulator on this port (0: any)
    demo_sources: list = field(default_factory=list)
    log_dir: Path | None = None  # None: the functions log to this terminal
    server: postgres.PostgresServer | None = None
    servers: dict[str, FunctionServer] = field(default_factory=dict)
    _scheduler: Scheduler | None = None
    _log_files: list = field(default_factory=list)
    _feeds: ThreadingHTTPServer | None = None
    _tasks: TasksEmulator | None = None
    gemini: GeminiEmulator | None = None  # tests script it (local/gemini_emulator.py)
    _bound: dict[str, socket.socket] = field(default_factory=dict)  # bound, not yet handed over

    @classmethod
    def on_free_ports(cls, **fields) -> Stack:
        """A stack whose functions and feed server take free ports, so that it can run beside
        `make dev` and beside other stacks (tests, the demo, the benchmarks). The functions'
        sockets are bound now (port 0: any free one), so their URLs are known before start and
        no other server can take those ports meanwhile; each is handed to its function when
        it starts (see local/launcher.py). The feed server binds a free port when it starts."""
        fields.setdefault("ports", dict.fromkeys(FUNCTIONS, 0))
        fields.setdefault("feeds_port", 0)
        stack = cls(**fields)
        stack.bind_function_ports()
        return stack

    @property
    def processes(self) -> dict[str, subprocess.Popen]:
        return {name: server.process for name, server in self.servers.items()}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}/"

    @property
    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.database_url or "",
            "STATUS_URL": self.url("status"),
            "CANCEL_URL": self.url("cancel"),
            "ENQUEUE_URL": self.url("enqueue"),
            "API_TOKEN": DEV_TOKEN,
            "ENQUEUE_KINDS": "*",  # development: demo and the test kinds too
            "FORWARDED_HOPS": "0",  # no front end here: a status caller is its connection's peer
            "THREADS": "32",
            "PYTHONUNBUFFERED": "1",
            # Development only: webhooks to a receiver on this machine, and the demo feeds,
            # which are served on loopback (both refused by default).
            "CALLBACK_ALLOW_LOOPBACK": "1",
            "FEED_ALLOW_PRIVATE": "1",
            **self.tasks_env,
            **self.writer_env,
            **self.extra_env,
        }

    @property
    def tasks_emulator(self) -> TasksEmulator | None:
        """The Cloud Tasks emulator, while the stack runs one."""
        return self._tasks

    @property
    def tasks_env(self) -> dict[str, str]:
        """With the emulator, enqueue pushes real Cloud Tasks through the real client."""
        if self.tasks_port is None:
            return {}
        return {
            "TASKS_QUEUE": "projects/local/locations/local/queues/jobs",
            "PROCESS_URL": self.url("process"),
            "TASKS_SERVICE_ACCOUNT": "invoker@local.iam.gserviceaccount.com",
            "CLOUD_TASKS_EMULATOR_HOST": f"127.0.0.1:{self.tasks_port}",
            "WEBHOOK_SECRET": "dev-webhook-secret",
        }

    @property
    def writer_env(self) -> dict[str, str]:
        """With the Gemini emulator, newsletters are written by the real SDK against it."""
        if self.gemini_port is None:
            return {}
        return {
            "NEWSLETTER_WRITER": "gemini",
            "WRITER_API_KEY": "local-key",
            "WRITER_BASE_URL": f"http://127.0.0.1:{self.gemini_port}",
            "WRITER_RETRY_DELAY_SECONDS": "0.2",
        }

    def start_database(self) -> None:
        if self.database_url is None:
            if self.persistent:
                bindir = postgres.find_bindir()
                if bindir is None:
                    raise RuntimeError("No PostgreSQL server binaries found; run `make venv` first")
                user = "nobody" if os.geteuid() == 0 else None
                if user:
                    bindir = postgres._bindir_for_unprivileged(bindir)
                datadir = postgres.persistent_datadir(REPO)
                port = int(os.environ.get("DEV_DB_PORT", "54329"))
                self.server = postgres.PostgresServer(datadir, port, bindir, user).start()
            else:
                self.server = postgres.throwaway_server()
            self.database_url = self.server.url
        session = open_session(self.database_url)
        try:
            apply_migrations(session)
            self.demo_sources = seed_demo_sources(session, self.feeds_port)
        finally:
            session.close()

    def _launch(self, name: str, sock: socket.socket) -> None:
        output = None
        if self.log_dir is not None:
            output = open(self.log_dir / f"{name}.log", "ab")
            self._log_files.append(output)
        self.servers[name] = start_function(name, {**os.environ, **self.env}, sock=sock, output=output)

    def start_function(self, name: str) -> None:
        """(Re)start one function on its port, and wait until it serves."""
        self._launch(name, bind_port(self.ports[name], patience=10.0))
        self.servers[name].wait_until_serving()

    def stop_function(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Stop one function, by default abruptly (a crash, or an instance going away)."""
        self.servers.pop(name).stop(sig)

    def exited(self) -> dict[str, int]:
        """The functions whose server has exited (a crash, a kill): name -> its exit status."""
        return {
            name: server.process.returncode
            for name, server in self.servers.items()
            if server.process.poll() is not None
        }

    def restart_function(self, name: str) -> None:
        """A function whose server exited, on its port again (what is left of it ended first)."""
        self.stop_function(name)
        self.start_function(name)

    def bind_function_ports(self) -> None:
        """Bind a socket for each function that has none yet; `ports` then holds the real ports."""
        for name in FUNCTIONS:
            if name in self._bound:
                continue
            try:
                self._bound[name] = bind_port(self.ports[name])
            except OSError as exc:
                raise RuntimeError(f"cannot serve {name} on port {self.ports[name]}: {exc}") from exc
            self.ports[name] = self._bound[name].getsockname()[1]

    def _close_bound(self) -> None:
        for sock in self._bound.values():
            sock.close()
        self._bound.clear()

    def start_functions(self) -> None:
        # Every port first: each function's environment names the others' URLs.
        self.bind_function_ports()
        sockets, self._bound = self._bound, {}
        for name, sock in sockets.items():
            self._launch(name, sock)
        for server in self.servers.values():
            server.wait_until_serving()

    def start(self) -> Stack:
        try:
            self._feeds = serve_feeds(self.feeds_port, self.feeds_relative_to_today)
            self.feeds_port = self._feeds.server_address[1]
            if self.tasks_port is not None:
                self._tasks = TasksEmulator(
                    port=self.tasks_port, allow_loopback=True, max_concurrent=self.tasks_max_concurrent
                ).start()
                self.tasks_port = self._tasks.port
            if self.gemini_port is not None:
                self.gemini = GeminiEmulator(port=self.gemini_port).start()
                self.gemini_port = self.gemini.server.server_address[1]
            self.start_database()
            self.start_functions()
            if self.scheduler:
                # With Cloud Tasks, Scheduler is the safety net and ticks as in production.
                every = 60.0 if self._tasks else 1.0
                self._scheduler = Scheduler(self.url("process"), self.url("sweep"), every=every)
                self._scheduler.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.stopped.set()
        for server in self.servers.values():  # all at once, then wait for each
            server.send(signal.SIGTERM)
        for name, server in self.servers.items():
            server.wait_stopped(STOP_GRACE.get(name, 10.0))
        self._close_bound()
        self.servers.clear()
        for output in self._log_files:
            output.close()
        self._log_files.clear()
        if self._tasks is not None:
            self._tasks.stop()
            self._tasks = None
        if self.gemini is not None:
            self.gemini.stop()
            self.gemini = None
        if self._feeds is not None:
            self._feeds.shutdown()
            self._feeds.server_close()
            self._feeds = None
        if self.server is not None:
            self.server.stop()
            if not self.persistent:
                postgres.remove(self.server)
            self.server = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def last_seven_days() -> dict[str, str]:
    """The dashboard's default range (the last seven days, today included, UTC)."""
    today = datetime.now(UTC).date()
    return {"from": (today - timedelta(days=6)).isoformat(), "to": today.isoformat()}


def print_welcome(stack: Stack) -> None:
    status = stack.url("status")
    print("\nThe job queue is running locally. Open in a browser:")
    print(f"  dashboard    {stack.url('enqueue')}   (the form: its defaults make a newsletter from the demo feeds)")
    print(f"  archive      {status}?view=archive   (your jobs, live; token {DEV_TOKEN})")
    print(f"  status page  {status}?id=<id>&view=page   (the dashboard opens it for each job it starts)")
    print("\nThe functions:")
    for name in FUNCTIONS:
        print(f"  {name:8s} {stack.url(name)}")
    print(f"  database {stack.database_url}")
    ids = [source.id for source in stack.demo_sources]
    dated = "dated this week" if stack.feeds_relative_to_today else "dated January 2025"
    print(f"  feeds    http://127.0.0.1:{stack.feeds_port}/ (demo sources {', '.join(map(str, ids))}, {dated})")
    print(f"  tasks    127.0.0.1:{stack.tasks_port} (Cloud Tasks emulator, gRPC: enqueue dispatches at once)")
    if stack.tasks_emulator is not None:
        print(f"           http://{stack.tasks_emulator.rest_endpoint}/v2/ (its REST API, for curl)")
    print(f"\nAPI token: {DEV_TOKEN}   (Cloud Scheduler stand-in: process and sweep every 60 s)")
    body = json.dumps({"dateRange": last_seven_days(), "selectedSources": ids, "outputFormat": "markdown"})
    print("\nOr from a terminal:")
    print(f"  curl -s -X POST {stack.url('enqueue')} -H 'Authorization: Bearer {DEV_TOKEN}' \\")
    print(f"       -H 'Content-Type: application/json' -d '{body}'")
    print(f"  curl -N '{status}?id=<id>&stream=1'")
    print(f"  .venv/bin/python -m client --token {DEV_TOKEN} enqueue '{body}' --follow")
    print(f"  .venv/bin/python -m client --token {DEV_TOKEN} --status-url {status} stats")
    print("    the queue's figures, as the dashboard draws them; sweep logs its gauges each tick (`Queue gauges`)")
    print("\nA function that exits is restarted (and said so here). Ctrl-C stops everything.\n", flush=True)


def describe_exit(status: int) -> str:
    return f"killed by {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"


RESTARTS_PER_MINUTE = 3  # more: the function cannot stay up (a syntax error, a bad setting), so stop


class Supervisor:
    """make dev's watch over its functions: one that exits is said and restarted; one that
    keeps exiting stops everything, with the reason."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.restarts: dict[str, list[float]] = {}

    def check(self) -> str | None:
        """Restart what exited; the reason to stop everything, if any."""
        for name, status in self.stack.exited().items():
            now = time.monotonic()
            recent = [at for at in self.restarts.get(name, []) if at > now - 60] + [now]
            self.restarts[name] = recent
            if len(recent) > RESTARTS_PER_MINUTE:
                return f"{name} exited {len(recent)} times within a minute ({describe_exit(status)}): see its log above"
            print(f"\n{name} exited ({describe_exit(status)}); restarting it on {self.stack.url(name)}", flush=True)
            try:
                self.stack.restart_function(name)
            except (OSError, RuntimeError) as exc:
                return f"{name} exited ({describe_exit(status)}) and could not be restarted: {exc}"
            print(f"{name} is serving again on {self.stack.url(name)}", flush=True)
        return None


def dev_stack() -> Stack:
    """make dev's stack: fixed ports (overridable), a persistent database (or DATABASE_URL)."""
    stack = Stack(database_url=os.environ.get("DATABASE_URL") or None, feeds_relative_to_today=True)
    for name in FUNCTIONS:
        variable = f"{name.upper()}_PORT"
        if os.environ.get(variable):
            stack.ports[name] = int(os.environ[variable])
    stack.feeds_port = int(os.environ.get("FEEDS_PORT", stack.feeds_port))
    stack.tasks_port = int(os.environ.get("TASKS_PORT", "8123"))
    return stack


PORT_PATIENCE = 15.0


def wait_for_free_ports(stack: Stack) -> None:
    """`kill $pid; make dev`: the make dev that is stopping lets go of its ports within a few
    seconds (each function's grace, STOP_GRACE). Wait for them, up to PORT_PATIENCE, and say
    so; a port still held then stops the start, naming the port and what wanted it."""
    ports = {**stack.ports, "feeds": stack.feeds_port, "tasks": stack.tasks_port}
    if stack.database_url is None:
        ports["database"] = int(os.environ.get("DEV_DB_PORT", "54329"))
    deadline = time.monotonic() + PORT_PATIENCE
    for name, port in ports.items():
        try:
            bind_port(port).close()
            continue
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                continue  # the start reports it
        print(f"port {port} ({name}) is held: waiting up to {PORT_PATIENCE:.0f} s for it", flush=True)
        with contextlib.suppress(OSError):
            bind_port(port, patience=max(0.0, deadline - time.monotonic())).close()


def main() -> int:
    """make dev: serve until Ctrl-C (or SIGTERM)."""
    stack = dev_stack()
    stopping = threading.Event()
    # Handlers of our own: a shell's background job starts with SIGINT ignored, and Ctrl-C
    # must still stop everything.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    wait_for_free_ports(stack)
    stack.start()
    reason = None
    try:
        print_welcome(stack)
        supervisor = Supervisor(stack)
        while reason is None and not stopping.wait(0.5):
            reason = supervisor.check()
    finally:
        print(f"\nStopping everything: {reason}" if reason else "\nStopping...", flush=True)
        stack.stop()
    return 1 if reason else 0


if __name__ == "__main__":
    sys.exit(main())
