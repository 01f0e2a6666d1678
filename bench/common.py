"""What every scenario shares: the benchmark handlers, a database of its own, a full queue,
one HTTP client per thread, the statistics, and the pages a statement reads."""

from __future__ import annotations

import re
import statistics
import threading

import httpx

from local import postgres
from local.stack import DEV_TOKEN
from shared.core.db import STATEMENTS, Session, open_session
from shared.core.migrate import apply_migrations

HANDLERS = (
    "noop=bench.handlers:noop,progress_clock=bench.handlers:progress_clock,cancel_clock=bench.handlers:cancel_clock,"
    "start_clock=bench.handlers:start_clock"
)
AUTH = {"Authorization": f"Bearer {DEV_TOKEN}"}


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def statement_text(name: str) -> str:
    """A named statement without its comment lines, for EXPLAIN: pg8000 would read a
    `:parameter` named in a comment as one."""
    return "\n".join(line for line in STATEMENTS[name].splitlines() if not line.startswith("--"))


def shared_buffers(session: Session, sql: str, **params) -> int:
    """Pages one statement touches (EXPLAIN ANALYZE BUFFERS, rolled back): a count the
    machine's load cannot blur, unlike a time."""
    session.run_sql("BEGIN")
    try:
        plan = "\n".join(row[0] for row in session.run_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql, **params))
    finally:
        session.run_sql("ROLLBACK")
    found = re.search(r"Buffers: shared hit=(\d+)(?: read=(\d+))?", plan)
    return int(found.group(1)) + int(found.group(2) or 0)


def env_for(url: str, **extra: str) -> dict[str, str]:
    return {"DATABASE_URL": url, "JOB_HANDLERS": HANDLERS, **extra}


def session_for(url: str) -> Session:
    """A session with a long read timeout: filling a million rows takes a while."""
    return open_session(url, timeout=600)


def fresh_database(server: postgres.PostgresServer, name: str) -> str:
    admin = session_for(server.url)
    admin.run_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.run_sql(f"CREATE DATABASE {name}")
    admin.close()
    url = server.url_for(name)
    session = session_for(url)
    apply_migrations(session)
    session.close()
    return url


def fill_queue(url: str, jobs: int, kind: str = "noop") -> None:
    session = session_for(url)
    session.run_sql("TRUNCATE jobs CASCADE")
    session.run_sql(
        "INSERT INTO jobs (kind, current_step, last_event_seq) SELECT :kind, 'Queued', 0 FROM generate_series(1, :n)",
        kind=kind,
        n=jobs,
    )
    session.run_sql("VACUUM ANALYZE jobs")
    session.close()


_local = threading.local()


def http_client() -> httpx.Client:
    """One client per calling thread: a new httpx client builds an SSL context (about 30 ms),
    which would measure the client instead of the function."""
    if not hasattr(_local, "client"):
        _local.client = httpx.Client(timeout=60)
    return _local.client
