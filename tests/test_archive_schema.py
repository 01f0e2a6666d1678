"""Archiving copies rows whole (INSERT INTO jobs_archive SELECT * ...), and the list reads
both tables with one SELECT * each, so each archive table must have its live table's
columns, in the same order, with the same types. And migrations only add: a column dropped,
renamed or retyped would break the copy of rows archived before it."""

import re

import pytest

from shared.core.migrate import available_migrations

PAIRS = [("jobs", "jobs_archive"), ("job_events", "job_events_archive")]

COLUMNS = """
SELECT column_name, data_type FROM information_schema.columns
WHERE table_schema = 'public' AND table_name = :table
ORDER BY ordinal_position
"""


def columns(session, table: str) -> list[tuple[str, str]]:
    return [tuple(row) for row in session.run_sql(COLUMNS, table=table)]


def mismatch(session, live: str, archive: str) -> str | None:
    """Why the two tables differ, or None when they match column for column."""
    ours, theirs = columns(session, live), columns(session, archive)
    if not ours:
        return f"{live} has no columns"
    if ours != theirs:
        return f"{live} {ours} != {archive} {theirs}"
    return None


@pytest.mark.parametrize(("live", "archive"), PAIRS)
def test_each_archive_table_has_its_tables_columns_in_the_same_order(session, live, archive):
    assert mismatch(session, live, archive) is None


def test_the_check_catches_a_column_added_to_one_table_only_or_in_another_order(session):
    session.run_sql("CREATE TABLE planted (a int, b text)")
    session.run_sql("CREATE TABLE planted_archive (a int, b text)")
    assert mismatch(session, "planted", "planted_archive") is None
    session.run_sql("ALTER TABLE planted ADD COLUMN c uuid")
    assert "planted_archive" in mismatch(session, "planted", "planted_archive")
    session.run_sql("ALTER TABLE planted_archive ADD COLUMN d int, ADD COLUMN c uuid")
    session.run_sql("ALTER TABLE planted ADD COLUMN d int")
    assert mismatch(session, "planted", "planted_archive") is not None  # same columns, another order


# What a migration may not do to a column or a table: they only add.
SUBTRACTIONS = re.compile(
    r"\bDROP\s+(COLUMN|TABLE)\b|\bRENAME\b|\bALTER\s+COLUMN\s+\w+\s+(SET\s+DATA\s+)?TYPE\b", re.IGNORECASE
)


def subtractions(sql: str) -> list[str]:
    without_comments = re.sub(r"--[^\n]*", "", sql)
    return [match.group(0) for match in SUBTRACTIONS.finditer(without_comments)]


def test_migrations_only_add_columns_and_tables():
    found = {m.path.name: hits for m in available_migrations() if (hits := subtractions(m.path.read_text()))}
    assert found == {}


@pytest.mark.parametrize(
    "planted",
    [
        "ALTER TABLE jobs DROP COLUMN callback_url;",
        "ALTER TABLE jobs RENAME COLUMN kind TO job_kind;",
        "ALTER TABLE jobs ALTER COLUMN priority TYPE bigint;",
        "DROP TABLE jobs_archive;",
    ],
)
def test_the_migration_check_catches_a_subtraction(planted):
    assert subtractions("-- fine\nALTER TABLE jobs ADD COLUMN x int;\n" + planted)
    assert not subtractions("-- DROP COLUMN in a comment is fine\nDROP INDEX jobs_claim_idx;")
