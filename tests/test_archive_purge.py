"""The archive is purged after a second retention (ARCHIVE_RETENTION_DAYS, by sweep, in
batches): an archived job finished longer ago than that is deleted with its events."""

import pytest

from shared.core.errors import SettingsError
from shared.core.maintenance import SWEEP_BATCH
from shared.core.maintenance.purger import purge_archive
from shared.core.settings import Settings


def archive(session, count: int, days_ago: int) -> None:
    """`count` archived jobs finished `days_ago` days ago, with two events each."""
    session.run_sql(
        "WITH made AS (INSERT INTO jobs_archive (id, kind, job_status, finished_at, last_event_seq)"
        " SELECT gen_random_uuid(), 'noop', 'completed', now() - make_interval(days => :days), 2"
        " FROM generate_series(1, :n) RETURNING id)"
        " INSERT INTO job_events_archive (job_id, seq, kind) SELECT id, s, 'status' FROM made, generate_series(1, 2) AS s",
        n=count,
        days=days_ago,
    )


def counts(session) -> tuple[int, int]:
    jobs = session.run_sql("SELECT count(*) FROM jobs_archive")[0][0]
    events = session.run_sql("SELECT count(*) FROM job_events_archive")[0][0]
    return jobs, events


def test_archived_jobs_older_than_the_archive_retention_are_purged_with_their_events(session):
    archive(session, 1200, days_ago=400)  # more than two batches
    archive(session, 3, days_ago=100)
    assert purge_archive(session, archive_retention_days=365) == 1200
    assert counts(session) == (3, 6)
    assert purge_archive(session, archive_retention_days=365) == 0


def test_zero_keeps_the_archive_for_ever(session):
    archive(session, 2, days_ago=4000)
    assert purge_archive(session, archive_retention_days=0) == 0
    assert counts(session) == (2, 4)


def test_a_purge_is_bounded_by_its_batches(session):
    archive(session, 1200, days_ago=400)
    assert purge_archive(session, archive_retention_days=365, max_batches=1) == SWEEP_BATCH
    assert counts(session)[0] == 1200 - SWEEP_BATCH


def test_sweep_purges_and_answers_how_many(make_client, session):
    archive(session, 4, days_ago=50)
    archive(session, 1, days_ago=10)
    response = make_client("sweep", ARCHIVE_RETENTION_DAYS="30").post("/")
    assert response.status_code == 200 and response.get_json()["purged"] == 4
    assert counts(session) == (1, 2)
    assert make_client("sweep").post("/").get_json()["purged"] == 0  # the default is 365 days


def test_the_setting_is_a_whole_number_of_days():
    base = {"DATABASE_URL": "postgresql://localhost/jobs"}
    assert Settings.from_env(base).archive_retention_days == 365
    assert Settings.from_env({**base, "ARCHIVE_RETENTION_DAYS": "0"}).archive_retention_days == 0
    with pytest.raises(SettingsError, match="ARCHIVE_RETENTION_DAYS"):
        Settings.from_env({**base, "ARCHIVE_RETENTION_DAYS": "a year"})
