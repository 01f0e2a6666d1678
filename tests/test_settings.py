import pytest

from shared.core.errors import SettingsError
from shared.core.settings import Settings


def test_defaults_from_a_database_url():
    settings = Settings.from_env({"DATABASE_URL": "postgresql://app:s%40cret@db.internal:6543/jobs"})
    assert settings.database.host == "db.internal" and settings.database.port == 6543
    assert settings.database.user == "app" and settings.database.password == "s@cret"
    assert settings.database.database == "jobs" and not settings.database.uses_connector
    assert settings.heartbeat_seconds == 30 and settings.stalled_after_seconds == 900
    assert settings.retention_days == 30 and settings.allowed_origins == ("*",)


def test_cloud_sql_with_iam_auth():
    settings = Settings.from_env(
        {"INSTANCE_CONNECTION_NAME": "proj:europe-west1:jobs", "DB_USER": "runtime@proj.iam", "DB_NAME": "jobs"}
    )
    assert settings.database.uses_connector and settings.database.user == "runtime@proj.iam"


def test_every_bad_variable_is_named_in_one_message():
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(
            {
                "HEARTBEAT_SECONDS": "soon",
                "DB_POOL_SIZE": "0",
                "JOB_HANDLERS": "broken",
                "RETENTION_DAYS": "1.5",
            }
        )
    message = str(raised.value)
    for name in ("DATABASE_URL", "HEARTBEAT_SECONDS", "DB_POOL_SIZE", "JOB_HANDLERS", "RETENTION_DAYS"):
        assert name in message


def test_cloud_sql_needs_user_and_database():
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"INSTANCE_CONNECTION_NAME": "only-one-part"})
    message = str(raised.value)
    assert "INSTANCE_CONNECTION_NAME" in message and "DB_USER" in message and "DB_NAME" in message


def test_a_stall_threshold_shorter_than_the_heartbeat_is_refused():
    with pytest.raises(SettingsError, match="STALLED_AFTER_SECONDS"):
        Settings.from_env(
            {"DATABASE_URL": "postgresql://h/db", "HEARTBEAT_SECONDS": "60", "STALLED_AFTER_SECONDS": "30"}
        )


def test_the_api_token_never_shows_in_the_settings_repr():
    settings = Settings.from_env({"DATABASE_URL": "postgresql://h/db", "API_TOKEN": "s3cret-token"})
    assert "s3cret-token" not in repr(settings)


def test_api_tokens_map_tokens_to_tenants_and_api_token_is_the_default_tenant():
    settings = Settings.from_env(
        {"DATABASE_URL": "postgresql://localhost/jobs", "API_TOKEN": "t0", "API_TOKENS": "acme=t1, globex=t2"}
    )
    assert settings.api_tokens == (("default", "t0"), ("acme", "t1"), ("globex", "t2"))
    assert "t1" not in repr(settings)


def test_a_malformed_or_repeated_api_token_entry_is_named_without_its_token():
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"DATABASE_URL": "postgresql://localhost/jobs", "API_TOKENS": "bad tenant=s3cret,acme=x,b=x"})
    message = str(raised.value)
    assert "'bad tenant'" in message and "must not repeat a token" in message
    assert "s3cret" not in message


def test_a_transaction_pooler_without_a_direct_url_and_a_flag_that_is_not_on_or_off_are_refused():
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(
            {"DATABASE_URL": "postgresql://app@pooler/jobs", "DB_POOLER": "transaction", "MIGRATE_ON_START": "yes"}
        )
    message = str(raised.value)
    assert "DATABASE_DIRECT_URL" in message and "MIGRATE_ON_START must be 1 or 0" in message
    on = Settings.from_env({"DATABASE_URL": "postgresql://app@db/jobs", "MIGRATE_ON_START": "TRUE"})
    assert on.migrate_on_start


def test_the_documented_table_is_the_one_the_declarations_write():
    from local.settings_doc import PAGE, page_with_table  # noqa: PLC0415

    page = PAGE.read_text()
    assert page == page_with_table(page), "docs/settings.md differs from the declarations: python -m local.settings_doc"


def test_each_variable_is_declared_once_with_a_line_of_doc():
    from shared.core.handlers import kind_settings_classes  # noqa: PLC0415
    from shared.core.settings import declarations  # noqa: PLC0415

    declared = [item for cls in (Settings, *kind_settings_classes().values()) for item in declarations(cls)]
    names = [item.metadata["env"] for item in declared]
    assert len(names) == len(set(names)), sorted(name for name in names if names.count(name) > 1)
    assert all(item.metadata["doc"].strip() for item in declared)
    # Every field of the settings object is a declared setting, but the kinds' (read with them).
    assert {item.name for item in declarations(Settings)} | {"kinds"} == set(Settings.__dataclass_fields__)


def test_a_bound_and_a_derived_default_come_from_the_declaration():
    with pytest.raises(SettingsError, match=r"JOB_TIMEOUT_SECONDS must be at most 1800, got '3600'"):
        Settings.from_env({"DATABASE_URL": "postgresql://h/db", "JOB_TIMEOUT_SECONDS": "3600"})
    derived = Settings.from_env({"DATABASE_URL": "postgresql://h/db", "DB_TIMEOUT_SECONDS": "4"})
    assert derived.db_statement_timeout_seconds == 2.0
    with pytest.raises(SettingsError, match="DB_POOLER must be one of none, transaction, got 'session'"):
        Settings.from_env({"DATABASE_URL": "postgresql://h/db", "DB_POOLER": "session"})
