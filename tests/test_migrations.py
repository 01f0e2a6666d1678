import threading

from shared.migrate import apply_migrations, available_migrations
from tests.conftest import admin_session, with_database


def test_migrations_apply_to_an_empty_database_and_again_with_no_change(admin_url):
    admin = admin_session(admin_url)
    admin.run_sql("DROP DATABASE IF EXISTS jobqueue_migration_test")
    admin.run_sql("CREATE DATABASE jobqueue_migration_test")
    session = admin_session(with_database(admin_url, "jobqueue_migration_test"))
    try:
        applied = apply_migrations(session)
        assert applied == [path.name for _, _, path in available_migrations()]
        tables = {row[0] for row in session.run_sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"jobs", "job_events", "jobs_archive", "job_events_archive", "schema_migrations"} <= tables

        assert apply_migrations(session) == []
        versions = session.run_sql("SELECT version FROM schema_migrations ORDER BY version")
        assert [row[0] for row in versions] == [version for version, _, _ in available_migrations()]
    finally:
        session.close()
        admin.run_sql("DROP DATABASE jobqueue_migration_test WITH (FORCE)")
        admin.close()


def test_two_processes_migrating_at_once_apply_each_migration_once(admin_url):
    admin = admin_session(admin_url)
    admin.run_sql("DROP DATABASE IF EXISTS jobqueue_migration_race")
    admin.run_sql("CREATE DATABASE jobqueue_migration_race")
    url = with_database(admin_url, "jobqueue_migration_race")
    results, errors = [], []

    def migrate():
        session = admin_session(url)
        try:
            results.append(apply_migrations(session))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            session.close()

    try:
        threads = [threading.Thread(target=migrate) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        all_applied = [name for applied in results for name in applied]
        assert sorted(all_applied) == sorted(path.name for _, _, path in available_migrations())
    finally:
        admin.run_sql("DROP DATABASE jobqueue_migration_race WITH (FORCE)")
        admin.close()
