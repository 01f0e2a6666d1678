"""Numbered, forward-only migrations, recorded in schema_migrations by component.

The core's own live in shared/core/migrations; each built-in kind with tables of its own
brings a folder of its own (see `shared.core.handlers.Kind`). The core's are applied first,
then each kind's, in file order. A migration is known by (component, number): numbers need
only be unique within their folder.

Safe to run twice (applied migrations are skipped) and from two processes at once (an
advisory lock serialises them; the second finds nothing left to do).

With an owner role (DB_OWNER_ROLE), each migration runs under it (SET LOCAL ROLE), so the
role owns every table whichever database user migrates first, and every user that is a
member of it can use them all (infra/ grants it to each function's user).

    python -m shared.core.migrate   # applies to DATABASE_URL (or the Cloud SQL settings)
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from shared.core.db import Session, connect
from shared.core.handlers import builtin_kinds
from shared.core.settings import Settings

CORE = "core"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_LOCK_KEY = 4_715_032_001  # any constant shared by every migrating process
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    path: Path


def _folder(component: str, directory: Path) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise RuntimeError(f"migration file {path} must be named NNNN_name.sql")
        found.append(Migration(component, int(match.group(1)), match.group(2), path))
    versions = [migration.version for migration in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations in {directory} share a number")
    return found


def available_migrations() -> list[Migration]:
    """The core's, then each built-in kind's, in the order they are applied."""
    found = _folder(CORE, MIGRATIONS_DIR)
    for name, kind in sorted(builtin_kinds().items()):
        if kind.migrations is not None:
            found.extend(_folder(name, kind.migrations))
    return found


def quote_identifier(name: str) -> str:
    """A role name as a SQL identifier (IAM user names hold `@` and `.`)."""
    return '"' + name.replace('"', '""') + '"'


def _as_owner(session: Session, owner_role: str | None) -> None:
    if owner_role:
        session.run_sql(f"SET LOCAL ROLE {quote_identifier(owner_role)}")


def _ensure_ledger(session: Session, available: list[Migration], owner_role: str | None) -> None:
    """Create schema_migrations, or bring one from before components to this shape.

    Before components, every migration lived in one folder with numbers unique across it,
    so each old row (version, name) is the migration that still has that number and name,
    wherever it lives now: the row takes that migration's component and nothing reruns.
    """
    with session.transaction():
        _as_owner(session, owner_role)
        session.run_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " component text NOT NULL, version integer NOT NULL, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))"
        )
    has_component = session.run_sql(
        "SELECT 1 FROM information_schema.columns"
        " WHERE table_name = 'schema_migrations' AND column_name = 'component' AND table_schema = current_schema()"
    )
    if has_component:
        return
    with session.transaction():
        _as_owner(session, owner_role)
        session.run_sql("ALTER TABLE schema_migrations ADD COLUMN component text")
        for migration in available:
            session.run_sql(
                "UPDATE schema_migrations SET component = :component"
                " WHERE component IS NULL AND version = :version AND name = :name",
                component=migration.component,
                version=migration.version,
                name=migration.name,
            )
        session.run_sql("UPDATE schema_migrations SET component = 'core' WHERE component IS NULL")
        session.run_sql(
            "ALTER TABLE schema_migrations ALTER COLUMN component SET NOT NULL,"
            " DROP CONSTRAINT schema_migrations_pkey, ADD PRIMARY KEY (component, version)"
        )


def apply_migrations(session: Session, owner_role: str | None = None) -> list[str]:
    """Apply every pending migration, under `owner_role` when given; return those applied
    now as "component/file.sql"."""
    available = available_migrations()
    applied_now = []
    session.run_sql(f"SELECT pg_advisory_lock({_LOCK_KEY})")
    try:
        _ensure_ledger(session, available, owner_role)
        done = {
            (component, version)
            for component, version in session.run_sql("SELECT component, version FROM schema_migrations")
        }
        for migration in available:
            if (migration.component, migration.version) in done:
                continue
            with session.transaction():
                _as_owner(session, owner_role)
                session.run_sql(migration.path.read_text())
                session.run_sql(
                    "INSERT INTO schema_migrations (component, version, name) VALUES (:component, :version, :name)",
                    component=migration.component,
                    version=migration.version,
                    name=migration.name,
                )
            applied_now.append(f"{migration.component}/{migration.path.name}")
    finally:
        if not session.broken:
            session.run_sql(f"SELECT pg_advisory_unlock({_LOCK_KEY})")
    return applied_now


def main() -> int:
    settings = Settings.from_env()
    # Never through a transaction pooler: the advisory lock is the session's.
    session = Session(connect(settings.direct_database, timeout=60, application_name="jobqueue-migrate"))
    try:
        applied = apply_migrations(session, settings.db_owner_role)
    finally:
        session.close()
    print("applied: " + ", ".join(applied) if applied else "migrations: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
