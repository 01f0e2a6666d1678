"""A connection: direct with pg8000, or to Cloud SQL through the Python connector.

Connections are reused across warm invocations (a new TLS connection costs 10 to 80 ms).
The Cloud SQL connector looks for Google credentials as soon as it is constructed, so it
is created lazily, on the first connection, and only when INSTANCE_CONNECTION_NAME is set.
"""

from __future__ import annotations

import functools
import socket
import struct
import threading
from datetime import datetime

import pg8000.converters
import pg8000.native
from pg8000.exceptions import DatabaseError, InterfaceError

from shared.core import log
from shared.core.errors import DatabaseUnavailable
from shared.core.settings import DatabaseTarget

# SQLSTATE classes that mean "the server is going away or cannot take us", not "your SQL
# is wrong": connection exceptions, insufficient resources, operator intervention.
UNAVAILABLE_CLASSES = ("08", "53", "57")
QUERY_CANCELED = "57014"  # a statement timeout: the connection itself is fine
SSL_REQUEST = struct.pack("!ii", 8, 80877103)  # PostgreSQL's "may we speak TLS?"

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
                conn.execute_simple(f"SET statement_timeout = {milliseconds(statement_timeout)}")
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
        sock = _negotiate_tls(sock, host, target)
        return pg8000.native.Connection(
            user=target.user or "postgres",
            host=host,
            database=target.database,
            password=target.password,
            ssl_context=False,  # asked above
            timeout=timeout,
            application_name=application_name,
            sock=sock,
        )
    except BaseException:
        sock.close()
        raise


def _negotiate_tls(sock: socket.socket, host: str, target: DatabaseTarget) -> socket.socket:
    """The socket to speak on, TLS as libpq's sslmode: prefer asks and takes plain text if the
    server refuses; require refuses plain text; verify-ca and verify-full check the server's
    certificate, and verify-full its name too. pg8000 would ask itself, but builds a new SSL
    context, reading the system's CA store, for every connection (35 ms of CPU here: twice on
    a cold start, once per reconnect); ours are built once per process."""
    if target.sslmode == "disable":
        return sock
    sock.sendall(SSL_REQUEST)
    answer = sock.recv(1)
    if answer == b"S":
        return _tls_context(target.sslmode, target.sslrootcert).wrap_socket(sock, server_hostname=host)
    if target.sslmode != "prefer" or answer != b"N":
        raise InterfaceError(f"The database server refused TLS (sslmode={target.sslmode})")
    return sock


@functools.cache
def _tls_context(sslmode: str, rootcert: str | None):
    import ssl  # noqa: PLC0415 (a connection that asks for no TLS pays nothing for it)

    if sslmode in ("verify-ca", "verify-full"):
        context = ssl.create_default_context(cafile=rootcert)
        context.check_hostname = sslmode == "verify-full"
        return context
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # encrypted, not authenticated (libpq's too)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


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


def milliseconds(seconds: float) -> int:
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
