"""A job's preview: the text a handler shows while it works (the newsletter as it grows).

Preview events come in two shapes, and a reader puts them back together:

    {"format": "markdown", "content": "..."}   the whole text so far (it replaces what came before)
    {"format": "markdown", "append": "..."}    only what is new (it extends the latest text)

A handler that streams text (the newsletter's writer) writes through `PreviewStream`, which
stores what is new rather than the whole text each time, at most one write per `every`
seconds, and no more than `max_chars` characters in all: a long generation is a bounded
number of rows and bytes. Whatever was stored, `latest_preview` (and `latest_preview_text`)
gives back the newest text as one string, from a job's events (the framed `view=preview`);
the status JSON's `preview` does the same in SQL (sql/read_latest_message_and_preview.sql).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

PREVIEW = "preview"
TRUNCATED = "\n\n…"


def latest_preview(events: Iterable[Any]) -> dict | None:
    """{"format", "content"} of the newest preview among a job's events (in sequence order),
    or None when there is none. Each event needs `.kind` and `.data` (shared.core.queue.Event)."""
    shown: dict | None = None
    for event in events:
        if event.kind != PREVIEW or not isinstance(event.data, dict):
            continue
        data = event.data
        if isinstance(data.get("content"), str):
            shown = {"format": data.get("format"), "content": data["content"]}
        elif isinstance(data.get("append"), str) and shown is not None:
            shown["content"] += data["append"]
    return shown


def latest_preview_text(events: Iterable[Any]) -> str | None:
    """The newest preview text as one string, or None when the job has shown none."""
    shown = latest_preview(events)
    return None if shown is None else shown["content"]


class PreviewStream:
    """Writes a growing text as preview events: `start` stores the text so far, `add` buffers
    what is new and stores it when at least `every` seconds have passed since the last
    write; `flush` stores what is pending when due (call it while waiting, so that a stalled
    source still shows what it sent), or at once with `force=True`."""

    def __init__(
        self,
        emit: Callable[[str, dict], None],
        text_format: str,
        every: float = 0.5,
        max_chars: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._emit = emit
        self.format = text_format
        self.every = every
        self.max_chars = max_chars
        self._clock = clock
        self._pending: list[str] = []
        self._last_write = float("-inf")
        self.stored_chars = 0  # in every event since the last start
        self.writes = 0
        self.full = False  # max_chars reached: the rest is not shown

    def start(self, content: str) -> None:
        """Show this text in place of whatever was shown before."""
        self._pending.clear()
        self.full = False
        content = self._fit(content, 0)
        self.stored_chars = 0
        self._write({"format": self.format, "content": content})

    def add(self, text: str) -> None:
        if text and not self.full:
            self._pending.append(text)
        self.flush()

    def flush(self, force: bool = False) -> None:
        if not self._pending or (not force and self._clock() - self._last_write < self.every):
            return
        text = self._fit("".join(self._pending), self.stored_chars)
        self._pending.clear()
        self._write({"format": self.format, "append": text})

    def _fit(self, text: str, already: int) -> str:
        room = self.max_chars - already
        if len(text) <= room:
            return text
        self.full = True
        return text[: max(room - len(TRUNCATED), 0)] + TRUNCATED

    def _write(self, data: dict) -> None:
        self._emit(PREVIEW, data)
        self.stored_chars += len(data.get("content", data.get("append", "")))
        self._last_write = self._clock()
        self.writes += 1
