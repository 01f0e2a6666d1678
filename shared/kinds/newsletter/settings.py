"""The newsletter's own settings: its limits per feed download, and whether feeds may be on
private addresses (FEED_ALLOW_PRIVATE=1, for feeds inside your network). Read at start with the core's
(see `shared.core.settings`), so a bad value stops the function with the others."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NewsletterSettings:
    feed_timeout_seconds: float = 15.0
    feed_max_bytes: int = 5 * 1024 * 1024
    # Feeds (and their redirects) must be on public addresses, unless the operator opts out.
    feed_allow_private: bool = False


def read_settings(reader) -> NewsletterSettings:
    """`reader` is the core's SettingsReader: problems join the one message at start."""
    defaults = NewsletterSettings()
    return NewsletterSettings(
        feed_timeout_seconds=reader.number("FEED_TIMEOUT_SECONDS", defaults.feed_timeout_seconds, 0.1),
        # A limit under 1 KiB would refuse every feed (and read as "0 KiB" in the error).
        feed_max_bytes=reader.number("FEED_MAX_BYTES", defaults.feed_max_bytes, 1024, integer=True),
        feed_allow_private=reader.flag("FEED_ALLOW_PRIVATE"),
    )
