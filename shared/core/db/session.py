"""A session: one connection, its named statements, its transactions, and what a failure
in flight means for it (a broken connection is never lent again)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from shared.core import tracing
from shared.core.db.connection import QUERY_CANCELED, UNAVAILABLE_CLASSES, connect, milliseconds, sqlstate
from shared.core.db.statements import STATEMENTS, positional
from shared.core.errors import DatabaseUnavailable
from shared.core.settings import Settings

T = TypeVar("T")


class StatementTimeout(DatabaseUnavailable):
    """A statement ran past DB_STATEMENT_TIMEOUT_SECONDS and the server cancelled it."""

    default_message = "The job database is slow to answer; retry shortly"


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
            f"; SET LOCAL statement_timeout = {milliseconds(statement_timeout)}" if statement_timeout else ""
        )
        self._in_transaction = False
        # Lent from the pool's idle list and not yet used: if its first statement finds the
        # connection dead (a database restart since), nothing ran, so it may be replaced and
        # the statement sent again, once.
        self.stale_suspect = False
        self.lent = False  # the pool's: lent out now

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
            sql, make_vals = positional(STATEMENTS[name])
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

    def _guard(self) -> _Guard:
        """A statement in flight (a class, not a generator: entered on every statement)."""
        return _Guard(self)

    def _after_failure(self, exc: BaseException) -> None:
        """What a statement's failure means. The server's refusal of a statement (a
        DatabaseError pg8000 raises once it has read up to ReadyForQuery) leaves the connection
        in step; any other exception may have left part of the reply unread (a converter
        failing on a row: a RecursionError on deep JSON, a MemoryError, an interrupt), and the
        next statement on the connection would read this one's rows. Such a connection is never
        lent again. Raises what the caller sees instead of `exc`, or returns to let it pass."""
        if isinstance(exc, (InterfaceError, OSError)):
            self.broken = True
            raise DatabaseUnavailable() from exc
        if isinstance(exc, DatabaseError):
            code = sqlstate(exc)
            if code == QUERY_CANCELED:
                raise StatementTimeout() from exc
            if code[:2] in UNAVAILABLE_CLASSES:
                self.broken = True
                raise DatabaseUnavailable() from exc
            return
        self.broken = True

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 (closing a dead connection may fail any way it likes)
            pass


class _Guard:
    __slots__ = ("session",)

    def __init__(self, session: Session):
        self.session = session

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, exc: BaseException | None, traceback) -> bool:
        if exc is not None:
            self.session._after_failure(exc)
        return False


def open_session(url: str, timeout: float = 60.0, application_name: str = "jobqueue") -> Session:
    """A session on a database URL, read the way DATABASE_URL is: the one way scripts, the
    local stack, the tests and the benchmarks open a connection of their own."""
    target = Settings.from_env({"DATABASE_URL": url}).database
    return Session(connect(target, timeout=timeout, application_name=application_name))
