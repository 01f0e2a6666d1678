"""Five database users, one schema, as infra/ sets it up on Cloud SQL: each function connects
as its own user, every user is a member of one owner role, and migrations run under that role
(DB_OWNER_ROLE). Whichever user migrates first, the owner role owns every table and all five
users can read and write them all."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from pg8000.exceptions import DatabaseError

from shared.core import maintenance, queue
from shared.core.db import Session, connect
from shared.core.migrate import apply_migrations, quote_identifier
from shared.core.settings import Settings
from shared.kinds.newsletter.sources import add_source, list_sources
from tests.support import admin_session, with_database

PASSWORD = "owner-role-test"


def url_for(admin_url: str, user: str, database: str) -> str:
    parts = urlsplit(with_database(admin_url, database))
    netloc = f"{quote(user, safe='')}:{PASSWORD}@{parts.hostname}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def session_as(admin_url: str, user: str, database: str) -> Session:
    return Session(connect(Settings.from_env({"DATABASE_URL": url_for(admin_url, user, database)}).database))


@contextmanager
def cloud_sql_like_roles(admin_url: str, name: str) -> Iterator[tuple[str, str, list[str]]]:
    """A database owned by a stand-in for cloudsqlsuperuser, an owner role that is a member of
    it (as infra/'s owner user is), and five function users that are members of the owner, named
    like Cloud SQL's IAM users (with `@` and `.`)."""
    tag = f"{os.getpid()}_{name}"
    superuser, owner = f"jq_cloudsqlsuperuser_{tag}", f"jq-owner-{tag}@project.iam"
    users = [f"jq-{fn}-{tag}@project.iam" for fn in ("enqueue", "process", "status", "cancel", "sweep")]
    database = f"jq_roles_{tag}"
    admin = admin_session(admin_url)
    try:
        admin.run_sql(f"CREATE ROLE {superuser} NOLOGIN")
        admin.run_sql(f"CREATE ROLE {quote_identifier(owner)} NOLOGIN IN ROLE {superuser}")
        for user in users:
            admin.run_sql(
                f"CREATE ROLE {quote_identifier(user)} LOGIN PASSWORD '{PASSWORD}' IN ROLE {quote_identifier(owner)}"
            )
        admin.run_sql(f"CREATE DATABASE {database} OWNER {superuser}")
        yield database, owner, users
    finally:
        admin.run_sql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        for role in [*users, owner, superuser]:
            admin.run_sql(f"DROP ROLE IF EXISTS {quote_identifier(role)}")
        admin.close()


def migrate_all_at_once(admin_url: str, database: str, users: list[str], owner: str | None) -> list[list[str]]:
    """Every user's instance starts at once and migrates (MIGRATE_ON_START): one wins the lock."""
    results, errors = {}, []

    def migrate(user: str) -> None:
        session = session_as(admin_url, user, database)
        try:
            results[user] = apply_migrations(session, owner_role=owner)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            session.close()

    threads = [threading.Thread(target=migrate, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return [results[user] for user in users]


def use_every_table(session: Session, registry) -> None:
    """A job's whole life (jobs, job_events), a sweep that archives it (the archive tables) and a
    newsletter source (sources)."""
    job, _created = queue.enqueue(session, registry, kind="noop", payload={})
    claimed = queue.claim_named(session, job.id)
    assert claimed is not None
    queue.complete(session, queue.Lease.of(claimed), {"ok": True})
    assert [event.kind for event in queue.list_events(session, job.id)][-1] == "status"
    session.run_sql("UPDATE jobs SET finished_at = now() - interval '2 days' WHERE id = :id", id=job.id)
    assert maintenance.sweep(session, stalled_after_seconds=900, retention_days=1).archived == 1
    add_source(session, f"Source of {session.run_sql('SELECT current_user')[0][0]}", "https://example.com/feed.xml")
    assert list_sources(session)


def test_whichever_user_migrates_first_every_function_user_can_use_every_table(admin_url, registry):
    with cloud_sql_like_roles(admin_url, "owner") as (database, owner, users):
        applied = migrate_all_at_once(admin_url, database, users, owner)
        assert sum(1 for names in applied if names) == 1, "one user's instance applies them all"

        check = session_as(admin_url, users[0], database)
        owners = check.run_sql("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
        check.close()
        assert [row[0] for row in owners] == [owner]

        for user in users:
            session = session_as(admin_url, user, database)
            try:
                use_every_table(session, registry)
            finally:
                session.close()


def test_without_the_owner_role_the_first_migrator_keeps_the_tables_to_itself(admin_url):
    """The control: what the owner role prevents (another function's user is refused)."""
    with cloud_sql_like_roles(admin_url, "control") as (database, _owner, users):
        first = session_as(admin_url, users[2], database)
        apply_migrations(first)
        first.close()
        other = session_as(admin_url, users[0], database)
        try:
            with pytest.raises(DatabaseError, match="permission denied"):
                other.run_sql("SELECT count(*) FROM jobs")
        finally:
            other.close()
