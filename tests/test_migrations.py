import threading

from shared.core.migrate import apply_migrations, available_migrations
from tests.support import admin_session, scratch_name, with_database


def applied_names() -> list[str]:
    return [f"{m.component}/{m.path.name}" for m in available_migrations()]


def scratch_database(admin_url: str, name: str):
    name = scratch_name(name)
    admin = admin_session(admin_url)
    admin.run_sql(f"DROP DATABASE IF EXISTS {name}")
    admin.run_sql(f"CREATE DATABASE {name}")
    return admin, with_database(admin_url, name)


def test_migrations_apply_to_an_empty_database_and_again_with_no_change(admin_url):
    admin, url = scratch_database(admin_url, "jobqueue_migration_test")
    session = admin_session(url)
    try:
        assert apply_migrations(session) == applied_names()
        tables = {row[0] for row in session.run_sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert {"jobs", "job_events", "jobs_archive", "job_events_archive", "sources", "schema_migrations"} <= tables

        assert apply_migrations(session) == []
        recorded = session.run_sql("SELECT component, version FROM schema_migrations ORDER BY component, version")
        assert sorted(map(tuple, recorded)) == sorted((m.component, m.version) for m in available_migrations())
    finally:
        session.close()
        admin.run_sql(f"DROP DATABASE {scratch_name('jobqueue_migration_test')} WITH (FORCE)")
        admin.close()


def test_the_kinds_bring_their_own_migrations_and_the_core_names_none():
    by_component = {}
    for migration in available_migrations():
        by_component.setdefault(migration.component, []).append(migration.name)
    assert "sources" in by_component["newsletter"]
    assert "sources" not in by_component["core"]


# The ledger as the single-folder layout left it: 0001_jobs, 0002_sources, 0003_callbacks.
LEGACY_ORDER = [("core", 1), ("newsletter", 2), ("core", 3)]


def test_a_database_migrated_with_the_single_folder_layout_upgrades_without_rerunning_anything(admin_url):
    admin, url = scratch_database(admin_url, "jobqueue_migration_upgrade")
    session = admin_session(url)
    try:
        by_key = {(m.component, m.version): m for m in available_migrations()}
        # Today's database: the old ledger shape, the three migrations applied, a row in each table.
        session.run_sql(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for key in LEGACY_ORDER:
            migration = by_key[key]
            session.run_sql(migration.path.read_text())
            session.run_sql(
                "INSERT INTO schema_migrations (version, name) VALUES (:v, :n)", v=migration.version, n=migration.name
            )
        session.run_sql("INSERT INTO jobs (kind) VALUES ('demo')")
        session.run_sql("INSERT INTO sources (name, feed_url) VALUES ('Blog', 'https://example.com/feed')")

        applied = apply_migrations(session)

        legacy = {f"{c}/{by_key[(c, v)].path.name}" for c, v in LEGACY_ORDER}
        assert not legacy & set(applied), "a migration already applied ran again"
        assert set(applied) == set(applied_names()) - legacy  # only migrations newer than the old layout
        recorded = session.run_sql("SELECT component, version, name FROM schema_migrations ORDER BY component, version")
        assert [(c, v) for c, v, _ in recorded] == sorted((m.component, m.version) for m in available_migrations())
        assert session.run_sql("SELECT count(*) FROM jobs")[0][0] == 1
        assert session.run_sql("SELECT name FROM sources")[0][0] == "Blog"
        assert apply_migrations(session) == []
    finally:
        session.close()
        admin.run_sql(f"DROP DATABASE {scratch_name('jobqueue_migration_upgrade')} WITH (FORCE)")
        admin.close()


def test_two_processes_migrating_at_once_apply_each_migration_once(admin_url):
    admin, url = scratch_database(admin_url, "jobqueue_migration_race")
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
        assert sorted(name for applied in results for name in applied) == sorted(applied_names())
    finally:
        admin.run_sql(f"DROP DATABASE {scratch_name('jobqueue_migration_race')} WITH (FORCE)")
        admin.close()
