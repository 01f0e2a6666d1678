"""Connections: timeouts on both connect paths, a statement timeout on every statement, and a
pooled connection left dead by a database restart replaced instead of answering 503."""

from __future__ import annotations

import gc
import socket
import struct
import threading
import uuid
import warnings
from urllib.parse import urlsplit

import pytest
from google.cloud.sql.connector import pg8000 as connector_pg8000

from shared.core.db import Pool, PoolExhausted, Session, StatementTimeout, connect, connection
from shared.core.errors import DatabaseUnavailable, SettingsError
from shared.core.settings import DatabaseTarget, Settings


class LocalConnector:
    """Stands in for Cloud SQL's Connector: what it does on its pg8000 path (its own socket,
    handed to google.cloud.sql.connector.pg8000.connect with the caller's keywords), over a
    plain socket to the test database instead of a TLS one to Cloud SQL."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.address = (parts.hostname, parts.port)
        self.calls: list[dict] = []

    def connect(self, instance: str, driver: str, **kwargs):
        self.calls.append(dict(kwargs))
        kwargs["timeout"] = kwargs.get("timeout", 30)  # the connector's default connect deadline
        for name in ("enable_iam_auth", "ip_type"):
            kwargs.pop(name)
        sock = socket.create_connection(self.address, timeout=kwargs["timeout"])
        sock.settimeout(None)  # as the connector leaves its TLS socket once connected
        return connector_pg8000.connect("127.0.0.1", sock, **kwargs)


def connector_target(url: str) -> DatabaseTarget:
    return DatabaseTarget(user="postgres", database=urlsplit(url).path.lstrip("/"), instance_connection_name="p:r:i")


def test_the_cloud_sql_connector_path_applies_the_connect_read_and_statement_timeouts(monkeypatch, database_url):
    connector = LocalConnector(database_url)
    monkeypatch.setattr(connection, "_cloud_sql_connector", lambda: connector)
    conn = connect(connector_target(database_url), timeout=7.0, statement_timeout=2.5)
    try:
        assert connector.calls[0]["timeout"] == 7  # the connect deadline
        assert conn._usock.gettimeout() == 7.0  # every read after it
        assert Session(conn).run_sql("SHOW statement_timeout") == [["2500ms"]]
    finally:
        conn.close()


def test_a_pool_over_the_connector_sets_db_timeout_seconds_as_the_read_timeout(monkeypatch, database_url):
    connector = LocalConnector(database_url)
    monkeypatch.setattr(connection, "_cloud_sql_connector", lambda: connector)
    settings = Settings.from_env(
        {"INSTANCE_CONNECTION_NAME": "p:r:i", "DB_USER": "postgres", "DB_NAME": "x", "DB_TIMEOUT_SECONDS": "4"}
    )
    pool = Pool(settings)
    pool.target = connector_target(database_url)
    try:
        with pool.session() as session:
            assert session.conn._usock.gettimeout() == 4.0
            assert session.run_sql("SHOW statement_timeout") == [["2s"]]  # half the read timeout
    finally:
        pool.close()


def test_a_statement_past_the_statement_timeout_is_cancelled_and_the_connection_stays_usable(env):
    pool = Pool(Settings.from_env({**env, "DB_STATEMENT_TIMEOUT_SECONDS": "0.2", "DB_POOL_SIZE": "1"}))
    try:
        with pool.session() as session:
            with pytest.raises(StatementTimeout):
                session.run_sql("SELECT pg_sleep(3)")
        with pool.session() as session:
            assert session.run_sql("SELECT 1") == [[1]]
        assert pool.opened == 1
    finally:
        pool.close()


def test_a_statement_timeout_is_a_503_not_a_500(make_client, session):
    client = make_client("status", DB_STATEMENT_TIMEOUT_SECONDS="0.05")
    session.run_sql(
        "CREATE FUNCTION slow_job_events() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$"
    )
    # A lock held by another transaction makes the status read wait past the timeout.
    session.run_sql("BEGIN")
    session.run_sql("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
    try:
        answer = client.get(f"/?id={uuid.uuid4()}")
    finally:
        session.run_sql("ROLLBACK")
    assert answer.status_code == 503 and answer.headers["Retry-After"]
    assert answer.get_json()["error"]["code"] == "unavailable"


def terminate(session: Session, application_name: str) -> int:
    rows = session.run_sql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name", name=application_name
    )
    return len(rows)


def test_a_pooled_connection_killed_while_idle_is_replaced_and_the_statement_sent_again(env, session):
    pool = Pool(Settings.from_env(env), application_name="jobqueue-stale")
    try:
        with pool.session() as pooled:
            pooled.run_sql("SELECT 1")
        assert terminate(session, "jobqueue-stale") == 1  # as a database restart would
        with pool.session() as pooled:
            assert pooled.run_sql("SELECT 2") == [[2]]
        assert pool.opened == 2
    finally:
        pool.close()


def test_a_connection_that_dies_after_a_statement_of_the_request_ran_is_not_retried(env, session):
    """The planted fault for the rule above: once something ran, sending it again could do
    it twice, so the caller gets DatabaseUnavailable (a 503 with Retry-After)."""
    pool = Pool(Settings.from_env(env), application_name="jobqueue-midway")
    try:
        with pool.session() as pooled:
            pooled.run_sql("SELECT 1")
            assert terminate(session, "jobqueue-midway") == 1
            with pytest.raises(DatabaseUnavailable):
                pooled.run_sql("SELECT 2")
    finally:
        pool.close()


def test_the_first_request_after_a_database_restart_is_answered_not_503(make_client, session):
    client = make_client("status")
    assert client.get(f"/?id={uuid.uuid4()}").status_code == 404  # the instance's connection is open
    assert terminate(session, "jobqueue-status") >= 1
    answer = client.get(f"/?id={uuid.uuid4()}")
    assert answer.status_code == 404, answer.get_json()


def test_timeouts_and_pooler_settings_are_checked_at_start():
    base = {"DATABASE_URL": "postgresql://u@h/d"}
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(
            {
                **base,
                "DB_TIMEOUT_SECONDS": "2",
                "DB_STATEMENT_TIMEOUT_SECONDS": "2",
                "DB_POOLER": "session",
                "DATABASE_DIRECT_URL": "mysql://nope",
            }
        )
    message = str(raised.value)
    for name in ("DB_STATEMENT_TIMEOUT_SECONDS", "DB_POOLER", "DATABASE_DIRECT_URL"):
        assert name in message
    settings = Settings.from_env(base)
    assert settings.direct_database == settings.database and settings.db_pooler == "none"
    assert settings.db_statement_timeout_seconds == 5 and settings.db_pool_size == 2
    direct = Settings.from_env(
        {**base, "DATABASE_DIRECT_URL": "postgresql://u@direct:5432/d", "DB_POOLER": "transaction"}
    )
    assert direct.direct_database.host == "direct" and direct.database.host == "h"


def test_connections_opened_during_the_first_connections_migration_wait_for_it(settings):
    """MIGRATE_ON_START: no connection of the instance may run a statement before the
    migrations that the first one applies are done."""
    started, release, order = threading.Event(), threading.Event(), []

    def migrate():
        started.set()
        assert release.wait(10)
        order.append("migrated")

    pool = Pool(settings, on_first_connection=migrate)
    try:

        def first_connection():
            with pool.session():
                pass

        first = threading.Thread(target=first_connection)
        first.start()
        assert started.wait(10)

        def second_statement():
            with pool.session() as session:
                session.run_sql("SELECT 1")
                order.append("statement")

        second = threading.Thread(target=second_statement)
        second.start()
        second.join(0.5)
        assert second.is_alive() and order == []  # waiting for the migration, not running
        release.set()
        second.join(10)
        first.join(10)
        assert order == ["migrated", "statement"]
    finally:
        pool.close()


def test_a_connection_reset_while_connecting_leaves_no_socket_open():
    """A pooler or database restarting resets connections mid-startup (pg8000's TLS request);
    each attempt must end in DatabaseUnavailable with its socket closed, not left to the GC."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    port = listener.getsockname()[1]

    def reset_every_connection():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # the listener was closed: the test is over
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST
            conn.close()

    resetter = threading.Thread(target=reset_every_connection, daemon=True)
    resetter.start()
    target = DatabaseTarget(host="127.0.0.1", port=port, user="u", database="d")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            for _ in range(100):
                with pytest.raises(DatabaseUnavailable):
                    connect(target, timeout=5)
            gc.collect()
    finally:
        listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        listener.close()
        resetter.join(5)
    assert [str(warning.message) for warning in caught if warning.category is ResourceWarning] == []


def test_a_connection_given_back_twice_is_refused_and_never_lent_to_two_borrowers(env):
    pool = Pool(Settings.from_env({**env, "DB_POOL_SIZE": "2", "DB_POOL_TIMEOUT_SECONDS": "0"}))
    try:
        session = pool.lend()
        pool.give_back(session)
        with pytest.raises(RuntimeError, match="given back twice"):
            pool.give_back(session)
        first, second = pool.lend(), pool.lend()
        assert first is not second  # one idle connection, one new: not the same one twice
        with pytest.raises(PoolExhausted):
            pool.lend()  # and no third slot was made by the second give_back
        pool.give_back(first)
        pool.give_back(second)
    finally:
        pool.close()
