"""What goes wrong during the campaign, one fault at a time, at seeded random moments.

Each fault undoes itself (an instance comes back, the database restarts, the lock is
released) before the next one starts, so the queue must recover from each on its own.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from local.launcher import FunctionServer, bind_port, start_function
from shared.core.db import Session, open_session


def admin_session(url: str, timeout: float = 10.0) -> Session:
    """The campaign's own connection (named so that the connection count leaves it out)."""
    return open_session(url, timeout=timeout, application_name="jobqueue-campaign")


class ProcessInstances:
    """The process function's instances, as Cloud Run would run several: requests spread over
    them, and a fault takes one down while the others go on."""

    def __init__(self, first: FunctionServer, env: dict[str, str], count: int, log_dir):
        self.env, self.log_dir = env, log_dir
        self.started = [first]  # every instance ever started, replaced ones too: stop() ends them all
        self.outputs: list = []  # their log files
        self.servers = [first] + [self._start(0) for _ in range(count - 1)]
        for server in self.servers:
            server.wait_until_serving(60)
        self._next = 0
        self._lock = threading.Lock()

    def _start(self, port: int) -> FunctionServer:
        output = open(self.log_dir / f"process-{port or 'new'}-{time.monotonic_ns()}.log", "ab")
        self.outputs.append(output)
        server = start_function("process", self.env, sock=bind_port(port, patience=10), output=output)
        self.started.append(server)
        return server

    def url(self) -> str:
        """The next instance's URL, in turn (Cloud Run's load balancing, simplified)."""
        with self._lock:
            self._next = (self._next + 1) % len(self.servers)
            return self.servers[self._next].url

    def pick(self, rng: random.Random) -> int:
        return rng.randrange(len(self.servers))

    def stop(self) -> None:
        """Stop every instance, the first (the stack's) included, and any a fault replaced."""
        for server in self.started:
            server.send(signal.SIGKILL)
        for server in self.started:
            server.wait_stopped()
        for output in self.outputs:
            output.close()

    def leftovers(self) -> list[int]:
        return [pid for server in self.started for pid in server.leftovers()]

    def replace(self, index: int) -> None:
        """A new instance on the same port, after the old one died."""
        server = self._start(self.servers[index].port).wait_until_serving(60)
        with self._lock:
            self.servers[index] = server


@dataclass
class Faults:
    instances: ProcessInstances
    server: object  # local.postgres.PostgresServer: the campaign's own, which it may kill
    direct_url: str
    stalled_after: float
    rng: random.Random
    pooler: object | None = None  # a PgBouncer the functions connect through, if any
    only: tuple[str, ...] = ()  # inject only these kinds (all when empty)
    log: list[dict] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def kinds(self) -> dict[str, tuple[int, Callable[[], None]]]:
        kinds = {
            "kill_process_instance": (4, self.kill_process_instance),
            "freeze_process_instance": (2, self.freeze_process_instance),
            "restart_database": (2, self.restart_database),
            "drop_listen_connections": (3, self.drop_listen_connections),
            "lock_jobs_table": (3, self.lock_jobs_table),
        }
        if self.pooler is not None:
            kinds["restart_pooler"] = (2, self.restart_pooler)
        return {name: kind for name, kind in kinds.items() if not self.only or name in self.only}

    def inject_one(self) -> str:
        kinds = self.kinds()
        name = self.rng.choices(list(kinds), weights=[weight for weight, _ in kinds.values()])[0]
        started = time.monotonic()
        kinds[name][1]()
        with self._lock:
            self.log.append({"fault": name, "at": round(started, 3), "seconds": round(time.monotonic() - started, 2)})
        return name

    def kill_process_instance(self) -> None:
        """SIGKILL mid-job, as a crashed or preempted instance: its jobs are left running
        with a heartbeat that stops, for sweep to recover. A new instance starts later."""
        index = self.instances.pick(self.rng)
        self.instances.servers[index].stop(signal.SIGKILL)
        time.sleep(self.rng.uniform(0.5, 3.0))
        self.instances.replace(index)

    def freeze_process_instance(self) -> None:
        """SIGSTOP past the stall threshold, then SIGCONT: the instance comes back as a
        zombie whose jobs were swept and claimed again. Its writes must change nothing."""
        server = self.instances.servers[self.instances.pick(self.rng)]
        server.send(signal.SIGSTOP)
        try:
            time.sleep(self.stalled_after + self.rng.uniform(2.0, 5.0))
        finally:
            server.send(signal.SIGCONT)

    def restart_database(self) -> None:
        """Immediate shutdown (no checkpoint, connections cut), down for a few seconds."""
        self.server.kill()
        time.sleep(self.rng.uniform(1.0, 4.0))
        self.server.start_again()  # durable as before: a crash must not lose acknowledged commits

    def restart_pooler(self) -> None:
        """PgBouncer restarts (a deploy of the pooler, a crash): every client connection drops."""
        self.pooler.restart(down_seconds=self.rng.uniform(0.5, 2.0))

    def drop_listen_connections(self) -> None:
        """The LISTEN connections die (a network blip): cancels and stream events must
        still arrive, by reconnection and by the polling fallback meanwhile."""
        with contextlib.suppress(Exception):
            session = admin_session(self.direct_url)
            try:
                session.run_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'jobqueue-notifier' AND pid <> pg_backend_pid()"
                )
            finally:
                session.close()

    def lock_jobs_table(self) -> None:
        """A slow database: writes to jobs wait behind a lock for a few seconds."""
        with contextlib.suppress(Exception):
            session = admin_session(self.direct_url, timeout=30)
            try:
                seconds = round(self.rng.uniform(2.0, 5.0), 1)
                session.run_sql(f"BEGIN; LOCK TABLE jobs IN EXCLUSIVE MODE; SELECT pg_sleep({seconds}); COMMIT")
            finally:
                session.close()
