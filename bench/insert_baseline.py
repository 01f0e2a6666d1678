"""PostgreSQL's own single-row INSERT rate, the baseline bulk enqueue is reported against: pgbench
(shipped with PostgreSQL) on the same throwaway server, in the same run, with as many clients
as bulk enqueue has. Each pgbench transaction inserts one queued job, durably committed, into
a database of its own that has the project's schema (the same table, indexes and constraints
as the queue's). It is run just before and just after the bulk measurement, and the two rates
are averaged, so that a change in the machine's load during the run counts on both sides.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.common import fresh_database
from local import postgres

DATABASE = "insert_baseline"
INSERT = (
    """INSERT INTO jobs (kind, payload, current_step, last_event_seq) VALUES ('noop', '{"n": 1}', 'Queued', 1);\n"""
)
TPS = re.compile(r"^tps = ([0-9.]+)", re.MULTILINE)


def pgbench_path(server: postgres.PostgresServer) -> Path | None:
    """The server's own pgbench, else `pg_config --bindir`'s or the PATH's; None if none."""
    if (server.bindir / "pgbench").is_file():
        return server.bindir / "pgbench"
    for bindir in postgres.candidate_bindirs():
        if (bindir / "pgbench").is_file():
            return bindir / "pgbench"
    found = shutil.which("pgbench")
    return Path(found) if found else None


class Baseline:
    """pgbench's single-row INSERT on `server`: `prepare()` once, then `rate()` per measurement."""

    def __init__(self, server: postgres.PostgresServer, clients: int, seconds: int):
        self.server, self.clients, self.seconds = server, clients, seconds
        self.pgbench = pgbench_path(server)
        self.script = Path(tempfile.mkdtemp(prefix="pgbench-")) / "insert.sql"

    def prepare(self) -> bool:
        """A fresh database with the schema; False when there is no pgbench to run."""
        if self.pgbench is None:
            return False
        fresh_database(self.server, DATABASE)
        self.script.write_text(INSERT)
        return True

    def rate(self) -> float:
        """Inserts per second (pgbench's tps, one insert per transaction)."""
        command = [
            str(self.pgbench), "--no-vacuum", "--protocol=prepared", f"--client={self.clients}",
            f"--jobs={self.clients}", f"--time={self.seconds}", f"--file={self.script}",
            "--host=127.0.0.1", f"--port={self.server.port}", f"--username={postgres.SUPERUSER}", DATABASE,
        ]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, timeout=self.seconds + 120, check=True)
        found = TPS.search(out.stdout)
        if found is None:
            raise RuntimeError(f"pgbench printed no tps: {out.stdout[-500:]} {out.stderr[-500:]}")
        return float(found.group(1))
