"""Numbered, forward-only migrations from shared/migrations, recorded in schema_migrations.

Safe to run twice (applied versions are skipped) and from two processes at once (an
advisory lock serialises them; the second finds nothing left to do).

With an owner role (DB_OWNER_ROLE), each migration runs under it (SET LOCAL ROLE), so the
role owns every table whichever database user migrates first, and every user that is a
member of it can use them all (infra/ grants it to each function's user).

    python -m shared.migrate        # applies to DATABASE_URL (or the Cloud SQL settings)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from shared.db import Session, connect
from shared.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_LOCK_KEY = 4_715_032_001  # any constant shared by every migrating process
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def available_migrations() -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise RuntimeError(f"migration file {path.name} must be named NNNN_name.sql")
        found.append((int(match.group(1)), match.group(2), path))
    versions = [version for version, _, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError("two migrations share a number")
    return found


def quote_identifier(name: str) -> str:
    """A role name as a SQL identifier (IAM user names hold `@` and `.`)."""
    return '"' + name.replace('"', '""') + '"'


def _as_owner(session: Session, owner_role: str | None) -> None:
    if owner_role:
        session.run_sql(f"SET LOCAL ROLE {quote_identifier(owner_role)}")


def apply_migrations(session: Session, owner_role: str | None = None) -> list[str]:
    """Apply every pending migration, under `owner_role` when given; return the names of
    those applied now."""
    applied_now = []
    session.run_sql(f"SELECT pg_advisory_lock({_LOCK_KEY})")
    try:
        with session.transaction():
            _as_owner(session, owner_role)
            session.run_sql(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
        done = {row[0] for row in session.run_sql("SELECT version FROM schema_migrations")}
        for version, name, path in available_migrations():
            if version in done:
                continue
            with session.transaction():
                _as_owner(session, owner_role)
                session.run_sql(path.read_text())
                session.run_sql(
                    "INSERT INTO schema_migrations (version, name) VALUES (:version, :name)",
                    version=version,
                    name=name,
                )
            applied_now.append(path.name)
    finally:
        if not session.broken:
            session.run_sql(f"SELECT pg_advisory_unlock({_LOCK_KEY})")
    return applied_now


def main() -> int:
    settings = Settings.from_env()
    session = Session(connect(settings.database, timeout=60, application_name="jobqueue-migrate"))
    try:
        applied = apply_migrations(session, settings.db_owner_role)
    finally:
        session.close()
    print("applied: " + ", ".join(applied) if applied else "migrations: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
