import pytest

from shared.errors import SettingsError
from shared.settings import Settings


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
