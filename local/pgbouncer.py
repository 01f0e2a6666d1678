"""A throwaway PgBouncer in transaction mode in front of a local PostgreSQL, for tests, the
scale run and the fault campaign: the pooler production may put between the functions and
the database, run the way the harness runs PostgreSQL.

The binary is Debian's `pgbouncer` (1.18: older than the prepared-statement support of
1.21, which is why the queue keeps no named statement across a transaction when it runs
through a pooler). When it is missing and we are root, it is installed with apt-get, as
`make browser-test` installs chromium. PgBouncer refuses to run as root: as root (CI), it
runs as `nobody`, like the PostgreSQL the harness starts.

    bouncer = start_pgbouncer(upstream_port=server.port)
    url = bouncer.url_for("jobs")     # clients connect here, in transaction mode
    bouncer.restart()                 # a pooler restart, for the fault campaign
    bouncer.stop()
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from local import reaper
from local.postgres import SUPERUSER, free_port

INSTALL_HINT = "install it (Debian: sudo apt-get install pgbouncer) or set PGBOUNCER to its path"


def find_pgbouncer() -> str | None:
    configured = os.environ.get("PGBOUNCER")
    if configured:
        return configured if Path(configured).is_file() else None
    return shutil.which("pgbouncer") or next(
        (path for path in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if Path(path).is_file()), None
    )


def ensure_pgbouncer() -> str:
    """The pgbouncer binary; installed with apt-get when missing and we are root."""
    found = find_pgbouncer()
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=environment, capture_output=True)
        done = subprocess.run(["apt-get", "install", "-y", "-qq", "pgbouncer"], env=environment, capture_output=True)
        found = find_pgbouncer()
        if found:
            return found
        raise RuntimeError(f"apt-get could not install pgbouncer: {done.stderr.decode()[-500:]}")
    raise RuntimeError(f"No pgbouncer on this machine: {INSTALL_HINT}")


@dataclass
class PgBouncer:
    """A PgBouncer on 127.0.0.1, trust-authenticated, transaction pooling to `upstream_port`."""

    binary: str
    workdir: Path
    port: int
    upstream_port: int
    pool_size: int = 20
    max_client_conn: int = 4000
    user: str | None = None  # the OS user it runs as (nobody when we are root)
    process: subprocess.Popen | None = field(default=None, repr=False)

    def url_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @property
    def config(self) -> Path:
        return self.workdir / "pgbouncer.ini"

    def _write_config(self) -> None:
        (self.workdir / "userlist.txt").write_text(f'"{SUPERUSER}" ""\n')
        self.config.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.upstream_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.workdir / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            f"max_client_conn = {self.max_client_conn}\n"
            "server_reset_query =\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"admin_users = {SUPERUSER}\n"
            f"logfile = {self.workdir / 'pgbouncer.log'}\n"
            "log_connections = 0\n"
            "log_disconnections = 0\n"
        )
        if self.user:
            entry = pwd.getpwnam(self.user)
            for path in (self.workdir, *self.workdir.iterdir()):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def start(self, timeout: float = 30.0) -> PgBouncer:
        self._write_config()
        options: dict = {}
        if self.user:
            entry = pwd.getpwnam(self.user)
            options = {"user": entry.pw_uid, "group": entry.pw_gid}
        # Foreground, in a session of its own: we hold its pid, and a stop ends it alone.
        self.process = subprocess.Popen(
            [self.binary, "-q", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            **options,
        )
        reaper.watch_group(self.process.pid, signal.SIGINT)  # ended with this process (local/reaper.py)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                error = self.process.stderr.read().decode() if self.process.stderr else ""
                log = (self.workdir / "pgbouncer.log").read_text() if (self.workdir / "pgbouncer.log").exists() else ""
                raise RuntimeError(f"pgbouncer exited with status {self.process.returncode}:\n{error}\n{log[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            time.sleep(0.05)
        raise RuntimeError(f"pgbouncer did not accept connections on port {self.port}")

    def stop(self, sig: int = signal.SIGINT) -> None:
        """Stop it (SIGINT: at once, dropping its connections; SIGKILL: as a crash)."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        if self.process.stderr:
            self.process.stderr.close()
        reaper.forget_group(self.process.pid)
        self.process = None

    def restart(self, down_seconds: float = 0.0, sig: int = signal.SIGINT) -> None:
        """Stop, stay down `down_seconds`, start again on the same port."""
        self.stop(sig)
        if down_seconds:
            time.sleep(down_seconds)
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_pgbouncer(upstream_port: int, pool_size: int = 20, port: int | None = None) -> PgBouncer:
    """Start a PgBouncer in a temporary folder; the caller calls remove() when done."""
    binary = ensure_pgbouncer()
    workdir = Path(tempfile.mkdtemp(prefix="jobqueue-pgbouncer-"))
    os.chmod(workdir, 0o755)
    user = "nobody" if os.geteuid() == 0 else None
    bouncer = PgBouncer(binary, workdir, port or free_port(), upstream_port, pool_size=pool_size, user=user)
    return bouncer.start()
