"""The newsletter's own settings: its limits per feed download, whether feeds may be on
private addresses (FEED_ALLOW_PRIVATE=1, for feeds inside your network), and the writer that
turns the entries into the newsletter (NEWSLETTER_WRITER: `digest`, the default, lays the
feeds' own summaries out; `gemini` has a Gemini model summarise them, see writer.py and
docs/newsletter.md). Read at start with the core's (see `shared.core.settings`), so a bad
value stops the function with the others."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WRITERS = ("digest", "gemini")
ON_FAILURE = ("digest", "fail")


@dataclass(frozen=True)
class NewsletterSettings:
    feed_timeout_seconds: float = 15.0
    feed_max_bytes: int = 5 * 1024 * 1024
    # Feeds (and their redirects) must be on public addresses, unless the operator opts out.
    feed_allow_private: bool = False
    writer: str = "digest"
    writer_model: str = "gemini-2.5-flash"
    # Vertex AI (the deployed path: the process function's service account, no key) unless
    # an API key is set (the Gemini Developer API, for local use).
    writer_project: str | None = None  # None: the project google.auth.default() names
    writer_location: str = "us-central1"
    writer_api_key: str | None = None
    writer_base_url: str | None = None  # None: Google's endpoint; locally, the emulator's
    writer_timeout_seconds: float = 120.0  # the whole generation
    writer_stall_seconds: float = 30.0  # the longest wait for the next chunk
    writer_attempts: int = 3  # the SDK's retries of the request (429, 5xx) before the stream starts
    writer_retry_delay_seconds: float = 2.0  # the first retry's delay; each next one doubles
    writer_on_failure: str = "digest"  # or "fail": the attempt fails (and is retried) instead
    writer_preview_seconds: float = 0.5  # at most one preview write per this long
    writer_max_output_tokens: int = 16384  # about 250 summaries; 2.5 Flash allows 65,535
    # Summaries need no reasoning: 0 turns a 2.5 model's thinking off (faster first chunk, no
    # thinking tokens billed as output); -1 lets the model decide (a model that cannot stop
    # thinking, such as 2.5 Pro, needs -1 or a budget).
    writer_thinking_budget: int = 0
    # Not from the environment: tests give Vertex mode static credentials, since left to
    # itself the SDK asks google.auth.default(), which may reach for the network.
    writer_credentials: Any = None


def read_settings(reader) -> NewsletterSettings:
    """`reader` is the core's SettingsReader: problems join the one message at start."""
    defaults = NewsletterSettings()
    writer = _choice(reader, "NEWSLETTER_WRITER", WRITERS, defaults.writer)
    settings = NewsletterSettings(
        feed_timeout_seconds=reader.number("FEED_TIMEOUT_SECONDS", defaults.feed_timeout_seconds, 0.1),
        # A limit under 1 KiB would refuse every feed (and read as "0 KiB" in the error).
        feed_max_bytes=reader.number("FEED_MAX_BYTES", defaults.feed_max_bytes, 1024, integer=True),
        feed_allow_private=reader.flag("FEED_ALLOW_PRIVATE"),
        writer=writer,
        writer_model=reader.text("WRITER_MODEL") or defaults.writer_model,
        writer_project=reader.text("WRITER_PROJECT"),
        writer_location=reader.text("WRITER_LOCATION") or defaults.writer_location,
        writer_api_key=reader.text("WRITER_API_KEY"),
        writer_base_url=reader.text("WRITER_BASE_URL"),
        writer_timeout_seconds=reader.number("WRITER_TIMEOUT_SECONDS", defaults.writer_timeout_seconds, 1.0),
        writer_stall_seconds=reader.number("WRITER_STALL_SECONDS", defaults.writer_stall_seconds, 0.1),
        writer_attempts=reader.number("WRITER_ATTEMPTS", defaults.writer_attempts, 1, integer=True),
        writer_retry_delay_seconds=reader.number(
            "WRITER_RETRY_DELAY_SECONDS", defaults.writer_retry_delay_seconds, 0.0
        ),
        writer_on_failure=_choice(reader, "WRITER_ON_FAILURE", ON_FAILURE, defaults.writer_on_failure),
        writer_preview_seconds=reader.number("WRITER_PREVIEW_SECONDS", defaults.writer_preview_seconds, 0.05),
        writer_max_output_tokens=reader.number(
            "WRITER_MAX_OUTPUT_TOKENS", defaults.writer_max_output_tokens, 256, integer=True
        ),
        writer_thinking_budget=reader.number(
            "WRITER_THINKING_BUDGET", defaults.writer_thinking_budget, -1, integer=True
        ),
    )
    base_url = settings.writer_base_url
    if base_url and not base_url.startswith(("https://", "http://")):
        reader.problem(f"WRITER_BASE_URL must be an http(s) URL, got {base_url!r}")
    return settings


def _choice(reader, name: str, allowed: tuple[str, ...], default: str) -> str:
    value = (reader.text(name) or default).lower()
    if value not in allowed:
        reader.problem(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        return default
    return value
