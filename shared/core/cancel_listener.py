"""One LISTEN connection per process instance that carries cancel requests to its handlers.

A cancel request on a running job fires `pg_notify('job_cancel', '<job id>')` (a trigger,
migration 0009). The runner's watcher hands this listener a callback; the listener calls it
with the job id as soon as the notification arrives, and the handler's `ctx.cancelled` is
set at once. While the connection is down (`healthy` False) the watcher reads the leases
of all its jobs every CANCEL_CHECK_SECONDS instead, and the listener reconnects with
backoff. LISTEN is session state, so this connection is a direct one
(DATABASE_DIRECT_URL), never through a transaction pooler.
"""

from __future__ import annotations

import select
import threading
from collections.abc import Callable

from shared.core import log
from shared.core.db import connect
from shared.core.settings import DatabaseTarget

CHANNEL = "job_cancel"
_POLL_SECONDS = 1.0
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 15.0


class CancelListener:
    def __init__(
        self,
        target: DatabaseTarget,
        on_cancel: Callable[[str], None],
        timeout: float = 10.0,
        on_listening: Callable[[], None] | None = None,
    ):
        self.target = target
        self.timeout = timeout
        self._on_cancel = on_cancel
        self._on_listening = on_listening
        self._healthy = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn = None

    @property
    def healthy(self) -> bool:
        return self._healthy.is_set()

    def start(self) -> CancelListener:
        self._thread = threading.Thread(target=self._listen_forever, name="cancel-listener", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening, and return once the connection is closed (within the connect timeout):
        a watcher started next opens its own, and an instance holds one listening connection,
        never two while the old one finishes a poll."""
        self._stopped.set()
        self.drop_connection()  # wakes the poll at once
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.timeout + _POLL_SECONDS)

    def drop_connection(self) -> None:
        """Close the listening connection as a network failure would (tests, fault runs)."""
        conn = self._conn
        if conn is not None:
            try:
                conn._usock.shutdown(2)
            except OSError:
                pass

    def _listen_forever(self) -> None:
        backoff = _BACKOFF_FIRST
        while not self._stopped.is_set():
            try:
                self._listen_once()
                backoff = _BACKOFF_FIRST
            except Exception as exc:  # noqa: BLE001 (keep the thread alive whatever broke)
                if self._healthy.is_set() and not self._stopped.is_set():
                    log.warning("Cancel listener lost its connection; lease checks carry cancels", error=str(exc))
                self._healthy.clear()
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)

    def _listen_once(self) -> None:
        conn = connect(self.target, self.timeout, application_name="jobqueue-cancel-listener")
        self._conn = conn
        try:
            conn.execute_simple(f"LISTEN {CHANNEL}")
            self._healthy.set()
            # A cancel requested between the watcher's last lease check and this LISTEN
            # notified no one: have every job looked at once more.
            if self._on_listening is not None:
                self._on_listening()
            while not self._stopped.is_set():
                select.select([conn._usock], [], [], _POLL_SECONDS)  # wakes early on a notification
                # pg8000 reads notifications while it handles a statement's messages, and one
                # can sit in its read buffer where select() does not see it: a statement every
                # poll while jobs run (about one a second for the whole instance) flushes it
                # and proves the connection alive.
                conn.execute_simple("SELECT 1")
                self._drain(conn)
        finally:
            self._healthy.clear()
            self._conn = None
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def _drain(self, conn) -> None:
        while conn.notifications:
            _, channel, payload = conn.notifications.popleft()
            if channel == CHANNEL:
                self._on_cancel(payload)
