"""The newsletter's own settings: its limits per feed download, whether feeds may be on
private addresses (FEED_ALLOW_PRIVATE=1, for feeds inside your network), and the writer that
turns the entries into the newsletter (NEWSLETTER_WRITER: `digest`, the default, lays the
feeds' own summaries out; `gemini` has a Gemini model summarise them, see writer.py and
docs/newsletter.md). Declared like the core's (`shared.core.settings.setting`) and read at
start with them, so a bad value stops the function with the others, and docs/settings.md's
table lists them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from shared.core.settings import setting

WRITERS = ("digest", "gemini")
ON_FAILURE = ("digest", "fail")


def _base_url_is_http(values: dict, reader) -> None:
    base_url = values["writer_base_url"]
    if base_url and not base_url.startswith(("https://", "http://")):
        reader.problem(f"WRITER_BASE_URL must be an http(s) URL, got {base_url!r}")


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
    writer: str = setting(
        "NEWSLETTER_WRITER",
        "digest",
        choices=WRITERS,
        doc="who writes the newsletter: `digest` (the feeds' own summaries) or `gemini` (a Gemini model; "
        "docs/newsletter.md, The writer)",
    )
    writer_model: str = setting("WRITER_MODEL", "gemini-2.5-flash", doc="the Gemini model")
    # Vertex AI (the deployed path: the process function's service account, no key) unless
    # an API key is set (the Gemini Developer API, for local use).
    writer_project: str | None = setting(
        "WRITER_PROJECT", doc="the Vertex AI project (unset: the one google.auth finds)"
    )
    writer_location: str = setting("WRITER_LOCATION", "us-central1", doc="the Vertex AI location")
    writer_api_key: str | None = setting(
        "WRITER_API_KEY",
        secret=True,
        doc="set: the Gemini Developer API with this key (local use); unset: Vertex AI as the function's service "
        "account",
    )
    writer_base_url: str | None = setting(
        "WRITER_BASE_URL", doc="another endpoint for the SDK (the local emulator's URL)"
    )
    writer_timeout_seconds: float = setting("WRITER_TIMEOUT_SECONDS", 120.0, minimum=1.0, doc="the longest generation")
    writer_stall_seconds: float = setting(
        "WRITER_STALL_SECONDS",
        30.0,
        minimum=0.1,
        doc="the longest wait for the generation's next chunk (the first one included)",
    )
    writer_attempts: int = setting(
        "WRITER_ATTEMPTS", 3, minimum=1, doc="the SDK's tries of the request on 429 and 5xx before the stream starts"
    )
    writer_retry_delay_seconds: float = setting(
        "WRITER_RETRY_DELAY_SECONDS", 2.0, minimum=0.0, doc="the SDK's first wait between tries (doubling, jittered)"
    )
    writer_on_failure: str = setting(
        "WRITER_ON_FAILURE",
        "digest",
        choices=ON_FAILURE,
        doc="`digest`: a failed generation ends in the digest (`writer fell back to digest: …`); `fail`: the "
        "attempt fails and is retried",
    )
    writer_preview_seconds: float = setting(
        "WRITER_PREVIEW_SECONDS",
        0.5,
        minimum=0.05,
        doc="at most one preview write per this long while the model writes",
    )
    writer_max_output_tokens: int = setting(
        "WRITER_MAX_OUTPUT_TOKENS",
        16384,
        minimum=256,
        doc="the answer's size limit (about 250 summaries; 2.5 Flash allows 65,535)",
    )
    # Summaries need no reasoning: 0 turns a 2.5 model's thinking off (faster first chunk, no
    # thinking tokens billed as output); -1 lets the model decide (a model that cannot stop
    # thinking, such as 2.5 Pro, needs -1 or a budget).
    writer_thinking_budget: int = setting(
        "WRITER_THINKING_BUDGET", 0, minimum=-1, doc="the model's thinking (0 off, -1 the model's choice)"
    )
    # Not from the environment: tests give Vertex mode static credentials, since left to
    # itself the SDK asks google.auth.default(), which may reach for the network.
    writer_credentials: Any = None

    CHECKS: ClassVar = (_base_url_is_http,)
