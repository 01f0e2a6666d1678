"""The statement registry's shared parts: the claims' fair pick and the start of an attempt are
written once (shared/core/sql/parts/) and every claim runs that one text."""

from shared.core.db.statements import INCLUDE, SQL_DIR, STATEMENTS

CLAIMS = ("claim_named_job", "claim_next_job", "claim_next_job_from_floor")


def part_body(name: str) -> str:
    """A part's SQL without its leading comment lines."""
    lines = (SQL_DIR / "parts" / name).read_text().splitlines()
    return "\n".join(line for line in lines if not line.startswith("--"))


def test_every_include_is_resolved_when_loaded():
    assert not [name for name, sql in STATEMENTS.items() if INCLUDE.search(sql) or "-- include:" in sql]


def test_every_claim_starts_its_attempt_with_the_one_shared_text():
    attempt = part_body("start_attempt.sql")
    assert "worker_token = gen_random_uuid()" in attempt
    assert all(attempt in STATEMENTS[claim] for claim in CLAIMS)
    pick = part_body("pick_fairly.sql")
    assert all(pick in STATEMENTS[claim] for claim in CLAIMS[1:])


def test_every_part_is_used():
    sources = [path.read_text() for path in SQL_DIR.glob("*.sql")]
    unused = [part.name for part in (SQL_DIR / "parts").glob("*.sql") if not any(part.name in s for s in sources)]
    assert not unused
