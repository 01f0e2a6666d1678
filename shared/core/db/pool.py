"""The pool: a few connections per process, each lent for a statement or a short transaction."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from queue import Empty, SimpleQueue

from shared.core.db.connection import connect
from shared.core.db.session import Session
from shared.core.errors import DatabaseUnavailable
from shared.core.settings import Settings


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
        # e.g. apply migrations: once per instance, before its first connection opens
        self._on_first_connection = on_first_connection
        self.size = settings.db_pool_size
        self.timeout = settings.db_pool_timeout_seconds
        self.io_timeout = settings.db_timeout_seconds
        self.statement_timeout = settings.db_statement_timeout_seconds
        self.pooled = settings.db_pooler == "transaction"
        self.application_name = application_name
        # A token per connection the pool may have open. SimpleQueue is C code: taking a slot and
        # giving it back costs a tenth of a microsecond, a BoundedSemaphore (a Python Condition)
        # ten times that, and a job takes two.
        self._slots: SimpleQueue[None] = SimpleQueue()
        for _ in range(self.size):
            self._slots.put(None)
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
        self._before_first_connection()
        return Session(
            self._connect(), reconnect=self._connect, pooled=self.pooled, statement_timeout=self.statement_timeout
        )

    def _before_first_connection(self) -> None:
        """The instance's once-only work (MIGRATE_ON_START's migrations, on a connection of their
        own) runs before any pooled connection opens, and every borrower waits for it before
        opening one: no statement runs against the schema before it, and its connection takes
        the place of a pooled one instead of adding to them (at most DB_POOL_SIZE, plus the
        listening one). If it fails, the next borrower tries again."""
        if self._on_first_connection is None:
            return
        with self._first_lock:
            first = self._on_first_connection
            if first is not None:
                first()
                self._on_first_connection = None

    @contextmanager
    def session(self, timeout: float | None = None) -> Iterator[Session]:
        session = self.lend(timeout)
        try:
            yield session
        finally:
            self.give_back(session)

    def lend(self, timeout: float | None = None) -> Session:
        """A connection for the caller alone until it gives it back (`session()` does both)."""
        try:
            self._slots.get(timeout=self.timeout if timeout is None else timeout)
        except Empty:
            raise PoolExhausted(f"All {self.size} database connections are busy; retry shortly") from None
        session = None
        try:
            with self._lock:
                session = self._idle.pop() if self._idle else None
            if session is None:
                session = self._new_session()
            else:
                session.stale_suspect = True
            session.lent = True
            return session
        except BaseException:
            if session is not None:  # an interrupt after the pop: the connection stays the pool's
                with self._lock:
                    self._idle.append(session)
            self._slots.put(None)
            raise

    def give_back(self, session: Session) -> None:
        if not session.lent:  # given back twice: a second token, and two borrowers on one connection
            raise RuntimeError("A pooled connection was given back twice")
        session.lent = False
        try:
            session.stale_suspect = False
            if session.broken:
                session.close()
                self._drop_idle()
            elif self._closed:
                session.close()
            else:
                with self._lock:
                    self._idle.append(session)
        finally:
            self._slots.put(None)

    def _drop_idle(self) -> None:
        with self._lock:
            idle, self._idle = list(self._idle), deque()
        for session in idle:
            session.close()

    def close(self) -> None:
        self._closed = True
        self._drop_idle()
