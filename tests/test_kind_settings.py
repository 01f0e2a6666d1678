"""A kind's own settings come through the settings object: declared in the kind, read at
start with the core's by the handler registry, a bad one named in the same message, and
handed to the kind's handler as `ctx.settings`."""

import pytest

from shared.core.errors import SettingsError
from shared.core.handlers import read_settings
from shared.kinds.newsletter.settings import NewsletterSettings

URL = "postgresql://localhost/jobs"


def test_a_kind_reads_its_own_variables_with_the_core_and_gets_its_defaults():
    assert read_settings({"DATABASE_URL": URL}).for_kind("newsletter") == NewsletterSettings(15.0, 5 * 1024 * 1024)
    tuned = read_settings({"DATABASE_URL": URL, "FEED_TIMEOUT_SECONDS": "2.5", "FEED_MAX_BYTES": "65536"})
    assert tuned.for_kind("newsletter") == NewsletterSettings(feed_timeout_seconds=2.5, feed_max_bytes=65536)
    assert tuned.for_kind("demo") is None  # a kind that reads nothing


def test_a_bad_kind_setting_is_named_in_the_one_message_with_the_core_problems():
    with pytest.raises(SettingsError) as raised:
        read_settings({"HEARTBEAT_SECONDS": "soon", "FEED_TIMEOUT_SECONDS": "never", "FEED_MAX_BYTES": "12"})
    message = str(raised.value)
    assert message.count("Bad settings") == 1
    for name in ("DATABASE_URL", "HEARTBEAT_SECONDS", "FEED_TIMEOUT_SECONDS", "FEED_MAX_BYTES"):
        assert name in message


@pytest.mark.parametrize("name", ["enqueue", "process", "status", "cancel", "sweep"])
def test_a_function_with_a_bad_feed_limit_stops_at_start(make_client, name):
    with pytest.raises(SettingsError, match="FEED_MAX_BYTES must be a whole number"):
        make_client(name, FEED_MAX_BYTES="5MB")


def test_a_kind_declares_its_settings_and_its_own_rules_between_them():
    from dataclasses import dataclass  # noqa: PLC0415
    from typing import ClassVar  # noqa: PLC0415

    from shared.core.settings import Settings, setting  # noqa: PLC0415

    def url_is_http(values, reader):
        if values["probe_url"] and not values["probe_url"].startswith("http"):
            reader.problem("PROBE_URL must be an http(s) URL")

    @dataclass(frozen=True)
    class ProbeSettings:
        probe_url: str | None = setting("PROBE_URL", doc="where the probe reports")
        probe_count: int = setting("PROBE_COUNT", 3, minimum=1, doc="how many probes")
        not_from_the_environment: object = None
        CHECKS: ClassVar = (url_is_http,)

    read = Settings.from_env({"DATABASE_URL": URL, "PROBE_COUNT": "5"}, kinds={"probe": ProbeSettings})
    assert read.for_kind("probe") == ProbeSettings(probe_url=None, probe_count=5)
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"PROBE_URL": "ftp://x", "PROBE_COUNT": "0"}, kinds={"probe": ProbeSettings})
    for named in ("DATABASE_URL", "PROBE_URL must be an http(s) URL", "PROBE_COUNT must be at least 1"):
        assert named in str(raised.value)
