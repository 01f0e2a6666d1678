"""The pool: a few connections per process, each lent for a statement or a short transaction."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

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
