"""Connections: the lifecycle statements, a session over one connection, and a small pool.

Connections are reused across warm invocations (a new TLS connection costs 10 to 80 ms).
The Cloud SQL connector looks for Google credentials as soon as it is constructed, so it
is created lazily, on the first connection, and only when INSTANCE_CONNECTION_NAME is set.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pg8000.converters
import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from shared.core import log, tracing
from shared.core.errors import DatabaseUnavailable
from shared.core.settings import DatabaseTarget, Settings

T = TypeVar("T")

SQL_DIR = Path(__file__).parent / "sql"
STATEMENTS: dict[str, str] = {}
_statements_lock = threading.Lock()


def add_statements(directory: Path) -> None:
    """Make every `name.sql` in `directory` runnable by name (the core's, and each kind's)."""
    with _statements_lock:
        for path in sorted(directory.glob("*.sql")):
            text = path.read_text()
            if STATEMENTS.get(path.stem, text) != text:
                raise RuntimeError(f"two SQL statements are named {path.stem!r}")
            STATEMENTS[path.stem] = text


add_statements(SQL_DIR)

# SQLSTATE classes that mean "the server is going away or cannot take us", not "your SQL
# is wrong": connection exceptions, insufficient resources, operator intervention.
_UNAVAILABLE_CLASSES = ("08", "53", "57")

_connector = None
_connector_lock = threading.Lock()


def _cloud_sql_connector():
    global _connector
    with _connector_lock:
        if _connector is None:
            from google.cloud.sql.connector import Connector  # noqa: PLC0415 (lazy: slow import)

            _connector = Connector(refresh_strategy="lazy")
        return _connector


def connect(
    target: DatabaseTarget,
    timeout: float = 10.0,
    application_name: str = "jobqueue",
    statement_timeout: float | None = None,
):
    """A new connection to the configured database (any pg8000 core connection).

    `timeout` bounds the connect and every read, on both paths (the Cloud SQL connector
    hands pg8000 a socket of its own, which pg8000 leaves without a timeout): a hung network
    must not hang an invocation, or the watcher that heartbeats every job of the instance.
    `statement_timeout` (seconds) is set for the session; through a transaction pooler there
    is no session, and Session sets it per transaction instead (pass None).
    """
    try:
        if target.uses_connector:
            conn = _through_connector(
                target.instance_connection_name,
                "pg8000",
                user=target.user,
                db=target.database,
                enable_iam_auth=True,
                ip_type=target.ip_type,
                timeout=max(1, round(timeout)),  # the connector's connect deadline (whole seconds)
                application_name=application_name,
            )
            conn._usock.settimeout(timeout)  # every read after the connect
        else:
            conn = _direct_connection(target, timeout, application_name)
        if statement_timeout is not None:
            try:
                conn.execute_simple(f"SET statement_timeout = {_milliseconds(statement_timeout)}")
            except BaseException:
                conn.close()
                raise
        return _prepare_connection(conn)
    except (InterfaceError, OSError) as exc:
        raise DatabaseUnavailable() from exc
    except DatabaseError as exc:
        # Refused at connect (no such database, a failed login, too many clients): whatever
        # the request was, the database cannot be reached as configured, which is a 503 for
        # the caller, never a 500. The reason travels as the cause, for the request's log line
        # (shared/web/service.py); background reconnect loops stay quiet.
        raise DatabaseUnavailable() from exc


def _direct_connection(target: DatabaseTarget, timeout: float, application_name: str):
    """A pg8000 connection over a socket we open and close ourselves if the startup fails.

    pg8000 leaves its own socket open when the server resets the connection while it asks for
    TLS (a PgBouncer or database restarting as we connect does that): a descriptor leaked per
    attempt, and a ResourceWarning when it is collected.
    """
    host = target.host or "127.0.0.1"
    sock = socket.create_connection((host, target.port), timeout)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)  # as pg8000 does on its own socket
        return pg8000.native.Connection(
            user=target.user or "postgres",
            host=host,
            database=target.database,
            password=target.password,
            ssl_context=True if target.ssl else None,
            timeout=timeout,
            application_name=application_name,
            sock=sock,
        )
    except BaseException:
        sock.close()
        raise


def refusal_reason(exc: BaseException) -> str | None:
    """What the server said when it refused us (SQLSTATE and message), for the operator's log;
    None when the failure was not the server's answer."""
    cause = exc.__cause__
    if not isinstance(cause, DatabaseError):
        return None
    detail = cause.args[0] if cause.args else {}
    message = detail.get("M", "") if isinstance(detail, dict) else str(detail)
    return f"{sqlstate(cause)} {message[:300]}".strip()


def _through_connector(*args, **kwargs):
    """The Cloud SQL connector's connection. Besides socket and server errors, it fails in
    its own ways (a credential that cannot refresh, its admin API answering an error): each
    means the database cannot be reached now, a 503 for the caller and a line for the operator."""
    try:
        return _cloud_sql_connector().connect(*args, **kwargs)
    except (InterfaceError, OSError, DatabaseError):
        raise
    except Exception as exc:
        log.error("The Cloud SQL connector could not connect", error=f"{type(exc).__name__}: {str(exc)[:300]}")
        raise DatabaseUnavailable() from exc


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


TIMESTAMPTZ_OID = 1184
UUID_OID = 2950


def _timestamptz(text: str):
    """PostgreSQL's timestamptz text, parsed with fromisoformat: pg8000's strptime-based
    parser was the largest client-side cost of a claim (each job row holds 7 timestamps)."""
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return pg8000.converters.timestamptz_in(text)  # infinity, years past 9999


def _prepare_connection(conn):
    conn.register_in_adapter(TIMESTAMPTZ_OID, _timestamptz)
    conn.register_in_adapter(UUID_OID, str)  # ids travel as strings; no UUID objects to convert back
    return conn


def sqlstate(exc: DatabaseError) -> str:
    detail = exc.args[0] if exc.args else None
    return detail.get("C", "") if isinstance(detail, dict) else ""


# Named SQL turned into pg8000's positional form once per process (pure text work).
_converted: dict[str, tuple[str, Callable]] = {}

QUERY_CANCELED = "57014"  # a statement timeout: the connection itself is fine


class Session:
    """One connection. Directly connected, each named statement is prepared once on it, then
    reused. Through a transaction-mode pooler (`pooled=True`) nothing outlives a transaction:
    each statement runs unnamed inside its own BEGIN ... COMMIT with SET LOCAL
    statement_timeout, because pg8000 sends Parse, Bind and Execute as separate round trips,
    which the pooler may route to different servers outside a transaction.
    """

    def __init__(
        self,
        conn,
        reconnect: Callable[[], Any] | None = None,
        pooled: bool = False,
        statement_timeout: float | None = None,
    ):
        self.conn = conn
        self.broken = False
        self.pooled = pooled
        self._reconnect = reconnect
        self._prepared: dict[str, pg8000.native.PreparedStatement] = {}
        self._begin = "BEGIN" + (
            f"; SET LOCAL statement_timeout = {_milliseconds(statement_timeout)}" if statement_timeout else ""
        )
        self._in_transaction = False
        # Lent from the pool's idle list and not yet used: if its first statement finds the
        # connection dead (a database restart since), nothing ran, so it may be replaced and
        # the statement sent again, once.
        self.stale_suspect = False

    def reopen(self) -> None:
        """Replace a broken connection with a new one (DatabaseUnavailable if it cannot)."""
        if self._reconnect is None:
            raise DatabaseUnavailable()
        self.close()
        self._prepared.clear()
        self._in_transaction = False
        self.conn = self._reconnect()
        self.broken = False

    def _statement(self, name: str) -> pg8000.native.PreparedStatement:
        statement = self._prepared.get(name)
        if statement is None:
            statement = pg8000.native.PreparedStatement(self.conn, STATEMENTS[name])
            self._prepared[name] = statement
        return statement

    def rows(self, name: str, /, **params: Any) -> list[dict]:
        """Run a named statement and return its rows as dicts."""
        return self._first_use_retried(self._rows, name, params)

    def _rows(self, name: str, params: dict) -> list[dict]:
        if self.pooled:
            sql, make_vals = _positional(STATEMENTS[name])
            with self._guard(), tracing.statement(name), self._own_transaction():
                context = self.conn.execute_unnamed(sql, make_vals(params))
                rows, columns = context.rows or [], context.columns
        else:
            with self._guard(), tracing.statement(name):
                statement = self._statement(name)
                rows, columns = statement.run(**params) or [], statement.columns
        if not rows:
            return []
        names = [column["name"] for column in columns]
        return [dict(zip(names, row)) for row in rows]

    def row(self, name: str, /, **params: Any) -> dict | None:
        rows = self.rows(name, **params)
        return rows[0] if rows else None

    def run_sql(self, sql: str, /, **params: Any) -> list:
        """Run ad-hoc SQL (migrations, tests, tools); the lifecycle uses named statements."""
        return self._first_use_retried(self._run_sql, sql, params)

    def _run_sql(self, sql: str, params: dict) -> list:
        with self._guard(), self._own_transaction():
            if not params:  # the simple protocol: may hold several statements
                return self.conn.execute_simple(sql).rows or []
            statement, make_vals = pg8000.native.to_statement(sql)
            return self.conn.execute_unnamed(statement, make_vals(params)).rows or []

    def _first_use_retried(self, run: Callable[[Any, dict], T], what: Any, params: dict) -> T:
        suspect, self.stale_suspect = self.stale_suspect, False
        try:
            return run(what, params)
        except DatabaseUnavailable:
            if not (suspect and self.broken and self._reconnect is not None):
                raise
        self.reopen()  # the pooled connection died while idle: nothing of this request ran
        return run(what, params)

    @contextmanager
    def _own_transaction(self) -> Iterator[None]:
        """Through a pooler, a statement outside `transaction()` gets a transaction of its own."""
        if not self.pooled or self._in_transaction:
            yield
            return
        self.conn.execute_simple(self._begin)
        try:
            yield
        except BaseException:
            self._rollback_quietly()
            raise
        self.conn.execute_simple("COMMIT")

    def _rollback_quietly(self) -> None:
        try:
            self.conn.execute_simple("ROLLBACK")
        except Exception:  # noqa: BLE001 (the connection may be gone; the guard marks it)
            pass

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Several statements as one transaction (through a pooler, with the statement timeout)."""
        self._in_transaction = True  # BEGIN and what follows get no transaction of their own
        try:
            self.run_sql(self._begin if self.pooled else "BEGIN")
            yield self
        except BaseException:
            try:
                if not self.broken:
                    self.run_sql("ROLLBACK")
            finally:
                self._in_transaction = False
            raise
        try:
            self.run_sql("COMMIT")
        finally:
            self._in_transaction = False

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """A statement in flight. The server's refusal of a statement (a DatabaseError pg8000
        raises once it has read up to ReadyForQuery) leaves the connection in step; any other
        exception may have left part of the reply unread (a converter failing on a row: a
        RecursionError on deep JSON, a MemoryError, an interrupt), and the next statement
        on the connection would read this one's rows. Such a connection is never lent again."""
        try:
            yield
        except (InterfaceError, OSError) as exc:
            self.broken = True
            raise DatabaseUnavailable() from exc
        except DatabaseError as exc:
            code = sqlstate(exc)
            if code == QUERY_CANCELED:
                raise StatementTimeout() from exc
            if code[:2] in _UNAVAILABLE_CLASSES:
                self.broken = True
                raise DatabaseUnavailable() from exc
            raise
        except BaseException:
            self.broken = True
            raise

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 (closing a dead connection may fail any way it likes)
            pass


def _positional(sql: str) -> tuple[str, Callable]:
    converted = _converted.get(sql)
    if converted is None:
        converted = _converted[sql] = pg8000.native.to_statement(sql)
    return converted


def open_session(url: str, timeout: float = 60.0, application_name: str = "jobqueue") -> Session:
    """A session on a database URL, read the way DATABASE_URL is: the one way scripts, the
    local stack, the tests and the benchmarks open a connection of their own."""
    target = Settings.from_env({"DATABASE_URL": url}).database
    return Session(connect(target, timeout=timeout, application_name=application_name))


class StatementTimeout(DatabaseUnavailable):
    """A statement ran past DB_STATEMENT_TIMEOUT_SECONDS and the server cancelled it."""

    default_message = "The job database is slow to answer; retry shortly"


class PoolExhausted(DatabaseUnavailable):
    """Every pooled connection stayed busy for the pool timeout. A job's write waits and
    tries again on this; an HTTP request answers 503 with Retry-After."""


class Pool:
    """At most `size` connections for this process, kept open between invocations, each
    lent for a statement (or a short transaction), never for a whole job.

    When every connection is busy for `timeout` seconds the caller gets PoolExhausted
    (a 503 with Retry-After), never an unbounded queue. A connection found broken makes the
    pool drop its idle ones too: after a database restart they are all dead.
    """

    def __init__(self, settings: Settings, application_name: str = "jobqueue", on_first_connection=None):
        self.target = settings.database
        self._on_first_connection = on_first_connection  # e.g. apply migrations, once per instance
        self.size = settings.db_pool_size
        self.timeout = settings.db_pool_timeout_seconds
        self.io_timeout = settings.db_timeout_seconds
        self.statement_timeout = settings.db_statement_timeout_seconds
        self.pooled = settings.db_pooler == "transaction"
        self.application_name = application_name
        self._slots = threading.BoundedSemaphore(self.size)
        self._idle: deque[Session] = deque()
        self._lock = threading.Lock()
        self._first_lock = threading.Lock()
        self.opened = 0  # connections opened over the pool's life (tests and benchmarks read it)
        self._closed = False  # closed: a connection given back is closed, not kept

    def _connect(self):
        conn = connect(
            self.target,
            self.io_timeout,
            self.application_name,
            statement_timeout=None if self.pooled else self.statement_timeout,
        )
        with self._lock:
            self.opened += 1
        return conn

    def _new_session(self) -> Session:
        session = Session(
            self._connect(), reconnect=self._connect, pooled=self.pooled, statement_timeout=self.statement_timeout
        )
        if self._on_first_connection is not None:
            # Every connection opened meanwhile waits here until the first one's work (the
            # migrations) is done: none may run a statement against the schema before it.
            with self._first_lock:
                first = self._on_first_connection
                if first is not None:
                    try:
                        first(session)
                    except BaseException:
                        session.close()  # the next connection tries again
                        raise
                    self._on_first_connection = None
        return session

    @contextmanager
    def session(self, timeout: float | None = None) -> Iterator[Session]:
        wait = self.timeout if timeout is None else timeout
        if not self._slots.acquire(timeout=wait):
            raise PoolExhausted(f"All {self.size} database connections are busy; retry shortly")
        session = None
        try:
            with self._lock:
                session = self._idle.pop() if self._idle else None
            if session is None:
                session = self._new_session()
            else:
                session.stale_suspect = True
            yield session
        finally:
            if session is not None:
                session.stale_suspect = False
                if session.broken:
                    session.close()
                    self._drop_idle()
                elif self._closed:
                    session.close()
                else:
                    with self._lock:
                        self._idle.append(session)
            self._slots.release()

    def _drop_idle(self) -> None:
        with self._lock:
            idle, self._idle = list(self._idle), deque()
        for session in idle:
            session.close()

    def close(self) -> None:
        self._closed = True
        self._drop_idle()
