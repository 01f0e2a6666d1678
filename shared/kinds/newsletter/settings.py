"""The newsletter's own settings: its limits per feed download, and whether feeds may be on
private addresses (FEED_ALLOW_PRIVATE=1, for feeds inside your network). Declared like the
core's (`shared.core.settings.setting`) and read at start with them, so a bad value stops
the function with the others, and docs/settings.md's table lists them."""

from __future__ import annotations

from dataclasses import dataclass

from shared.core.settings import setting


@dataclass(frozen=True)
class NewsletterSettings:
    feed_timeout_seconds: float = setting(
        "FEED_TIMEOUT_SECONDS", 15.0, minimum=0.1, doc="the time limit of one feed download"
    )
    # A limit under 1 KiB would refuse every feed (and read as "0 KiB" in the error).
    feed_max_bytes: int = setting(
        "FEED_MAX_BYTES", 5 * 1024 * 1024, minimum=1024, shown="5 MiB", doc="the size limit of one feed download"
    )
    # Feeds (and their redirects) must be on public addresses, unless the operator opts out.
    feed_allow_private: bool = setting(
        "FEED_ALLOW_PRIVATE",
        False,
        doc="`1`: feeds (and their redirects) may be on private addresses (`make dev` sets it: the demo feeds "
        "are on loopback)",
    )
