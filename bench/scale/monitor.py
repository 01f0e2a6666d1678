"""make scale's stack beyond the local one: the process instances it starts (one
functions-framework server each, as Cloud Run would run them) and the monitor that samples
the run every second."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from pathlib import Path

from bench.scale.procfs import connections_to, process_tree, rss_mb
from local.launcher import start_function
from local.stack import Stack
from shared.core.db import Session, connect
from shared.core.settings import Settings

MONITOR = "/* scale-monitor */"  # marks the monitor's statements, which the counts leave out


class Instance:
    """One process function server (functions-framework under gunicorn), as one Cloud Run
    instance of the process function would be."""

    def __init__(self, stack: Stack, port: int, threads: int, log_dir: Path):
        self.port = port
        self.url = f"http://127.0.0.1:{port}/"
        self.log = open(log_dir / f"process-{port}.log", "ab")  # closed in stop()
        # The one launcher: its server is ended with this run however the run ends (a SIGKILL too).
        env = {**os.environ, **stack.env, "THREADS": str(threads)}
        self.server = start_function("process", env, port=port, output=self.log)
        self.process = self.server.process
        self.killed = False

    def pids(self) -> list[int]:
        return [] if self.killed else process_tree(self.process.pid)

    def kill(self) -> None:
        self.server.stop(signal.SIGKILL)
        self.killed = True

    def stop(self) -> None:
        if not self.killed:
            self.server.stop(signal.SIGTERM, timeout=15)
        self.log.close()


class LockedSession:
    """One connection shared by the monitor's thread and the driver: one statement at a time."""

    def __init__(self, session: Session):
        self._session = session
        self._lock = threading.Lock()

    def run_sql(self, sql: str, /, **params):
        with self._lock:
            return self._session.run_sql(sql, **params)

    def close(self) -> None:
        with self._lock:
            self._session.close()


class Monitor(threading.Thread):
    """Samples the run every second on a connection of its own (its statements are marked
    so the statement counts leave them out)."""

    def __init__(self, url: str, db_ports: set[int], instances: list[Instance]):
        super().__init__(name="scale-monitor", daemon=True)
        self.session = LockedSession(Session(connect(Settings.from_env({"DATABASE_URL": url}).database, timeout=60)))
        self.db_ports = db_ports
        self.instances = instances
        self.excluded: set[str] = set()  # jobs whose heartbeat may stop (the killed instance's)
        self.samples: list[dict] = []
        self.stopped = threading.Event()

    def sample(self) -> dict:
        running, oldest = self.session.run_sql(
            f"{MONITOR} SELECT count(*), max(extract(epoch FROM now() - last_heartbeat)) FILTER"
            " (WHERE NOT (CAST(id AS text) = ANY(CAST(:excluded AS text[])))) FROM jobs WHERE job_status = 'running'",
            excluded=sorted(self.excluded) or [""],
        )[0]
        total = self.session.run_sql(
            f"{MONITOR} SELECT count(*) FROM pg_stat_activity"
            " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )[0][0]
        per_instance = [connections_to(self.db_ports, instance.pids()) for instance in self.instances]
        memory = [rss_mb(instance.pids()) for instance in self.instances]
        return {
            "at": time.time(),
            "running": running,
            "oldestHeartbeat": float(oldest) if oldest is not None else None,
            "connections": total,
            "perInstance": per_instance,
            "rssMb": memory,
        }

    def run(self) -> None:
        while not self.stopped.wait(1.0):
            with contextlib.suppress(Exception):
                self.samples.append(self.sample())

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)
        self.session.close()
