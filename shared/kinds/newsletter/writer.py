"""The newsletter's writer: after the feeds are read, either lay their entries out as they
are (`digest`, the default) or have a Gemini model choose and summarise them (`gemini`).

The model answers with structured output (a JSON schema: a list of {entry id, summary}),
never free text: the newsletter is still rendered by the templates, which escape every
summary and take each link from the entry it belongs to, so the model cannot add a link or
markup, and a feed entry that says "ignore your instructions" reaches it as data only. A
URL the model writes inside a summary is removed (and counted in the job's log).

The generation streams: each summary reaches the job's preview as soon as its JSON object
is complete, through `PreviewStream` (at most one write per WRITER_PREVIEW_SECONDS, only
what is new). The SDK runs in a helper thread while the job's thread waits on the chunks
and on `ctx.cancelled`: a cancel, the overall deadline or a stall cuts the writer's own
HTTP connection (the SDK is given our HTTP client through HttpOptions) while a chunk is
pending, and returns at once.

google-genai takes about 0.4 s to import: it is imported on the first generation only, so
the digest (and every other function) never pays for it.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import re
import socket
import threading
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from shared.core import log
from shared.core.errors import JobCancelled
from shared.core.preview import PreviewStream
from shared.kinds.newsletter.compose import Entry, Section
from shared.kinds.newsletter.render import day, md, md_url, title_for
from shared.kinds.newsletter.settings import NewsletterSettings

PROMPT = Path(__file__).parent / "prompts" / "writer.md"
SUMMARY_MAX_CHARS = 800
WAIT_STEP_SECONDS = 0.05  # how often the job's thread looks at cancel, deadlines and the preview
RETRY_STATUS_CODES = [429, 500, 502, 503, 504]
# Finish reasons that mean the model stopped for a reason other than being done.
STOPPED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "LANGUAGE", "OTHER"}
# A URL or a Markdown link inside a summary: the newsletter links only to the entries.
_MARKDOWN_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_URL = re.compile(r"(?i)<?\b(?:https?://|www\.)[^\s<>)\]]+>?")

SCHEMA = {
    "type": "OBJECT",
    "properties": {
        "summaries": {
            "type": "ARRAY",
            "items": {
                "type": "OBJECT",
                "properties": {"entry": {"type": "STRING"}, "summary": {"type": "STRING"}},
                "required": ["entry", "summary"],
                "propertyOrdering": ["entry", "summary"],
            },
        }
    },
    "required": ["summaries"],
}


class WriterFailed(Exception):
    """Why the model's newsletter could not be had; str() is a short public reason."""


@dataclass(frozen=True)
class Written:
    sections: list[Section]
    model: str
    tokens: dict


@cache
def instructions() -> str:
    return PROMPT.read_text()


def write(request, sections: list[Section], settings: NewsletterSettings, ctx) -> tuple[list[Section], dict]:
    """The sections to render, and what the result says about how they were written."""
    if settings.writer != "gemini":
        return sections, {"writer": "digest"}
    ctx.progress(88, step="Formatting", message=f"Writing with {settings.writer_model}")
    try:
        written = write_with_gemini(request, sections, settings, ctx)
    except WriterFailed as exc:
        if settings.writer_on_failure == "fail":
            raise
        log.warning(f"writer fell back to digest: {exc}", jobId=ctx.job_id, model=settings.writer_model)
        ctx.log(f"writer fell back to digest: {exc}", level="warning")
        return sections, {"writer": "digest", "writerFallback": str(exc), "model": settings.writer_model}
    return written.sections, {"writer": "gemini", "model": written.model, "tokens": written.tokens}


def entry_ids(sections: list[Section]) -> dict[str, tuple[int, Entry]]:
    """Short ids the model names entries by (e1, e2, ...), to (section index, entry)."""
    ids, number = {}, 0
    for index, section in enumerate(sections):
        for entry in section.entries:
            number += 1
            ids[f"e{number}"] = (index, entry)
    return ids


def prompt_data(request, sections: list[Section], ids: dict[str, tuple[int, Entry]]) -> str:
    """The user's message: the date range, the sources and their entries, as JSON data."""
    by_entry = {id(entry): entry_id for entry_id, (_, entry) in ids.items()}
    document = {
        "dateRange": {"from": request.start.isoformat(), "to": request.end.isoformat()},
        "sources": [
            {
                "name": section.source_name,
                "entries": [
                    {
                        "id": by_entry[id(entry)],
                        "title": entry.title,
                        "published": entry.published.isoformat(),
                        "summary": entry.summary,
                    }
                    for entry in section.entries
                ],
            }
            for section in sections
        ],
    }
    return json.dumps(document, ensure_ascii=False, indent=1)


def without_links(text: str) -> tuple[str, int]:
    """The summary with every link and URL taken out (a Markdown link keeps its words), and
    how many were taken out."""
    text, links = _MARKDOWN_LINK.subn(r"\1", text)
    text, urls = _URL.subn("", text)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > SUMMARY_MAX_CHARS:
        text = text[: SUMMARY_MAX_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return text, links + urls


class ItemScanner:
    """Finds each complete {"entry": ..., "summary": ...} object in the model's JSON while it
    streams in, so that the preview can show a summary as soon as it is whole. The answer's
    shape is the schema's: an object, its "summaries" array, the items (depth 3)."""

    def __init__(self):
        self.text = ""
        self._at = 0
        self._depth = 0
        self._in_string = False
        self._escaped = False
        self._item_start: int | None = None

    def feed(self, chunk: str) -> list[dict]:
        self.text += chunk
        found = []
        for at in range(self._at, len(self.text)):
            char = self.text[at]
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif char == "\\":
                    self._escaped = True
                elif char == '"':
                    self._in_string = False
            elif char == '"':
                self._in_string = True
            elif char in "{[":
                self._depth += 1
                if char == "{" and self._depth == 3:
                    self._item_start = at
            elif char in "}]":
                if char == "}" and self._depth == 3 and self._item_start is not None:
                    found.extend(_json_object(self.text[self._item_start : at + 1]))
                    self._item_start = None
                self._depth -= 1
        self._at = len(self.text)
        return found


def _json_object(text: str) -> list[dict]:
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return [value] if isinstance(value, dict) else []


class Connection:
    """The writer's own HTTP client, handed to the SDK, that a cancel can cut off while a
    chunk is pending. Closing an httpx client does not wake a thread blocked reading a
    response (nor does closing its socket: the read holds it open), so `cut` shuts the
    sockets of the responses it has seen down first, which ends the read at once and tells
    the server the generation is no longer wanted."""

    def __init__(self, timeout_seconds: float):
        import httpx2  # noqa: PLC0415 (google-genai's own HTTP client: loaded with it)

        self._lock = threading.Lock()
        self._streams: list[Any] = []
        self.cut_off = False
        self.client = httpx2.Client(timeout=timeout_seconds, event_hooks={"response": [self._remember]})

    def _remember(self, response) -> None:
        stream = response.extensions.get("network_stream")
        with self._lock:
            self._streams.append(stream)
            late = self.cut_off  # cut while this response was on its way: end it now
        if late:
            _shut(stream)

    def cut(self) -> None:
        with self._lock:
            self.cut_off = True
            streams = list(self._streams)
        for stream in streams:
            _shut(stream)
        self.client.close()


def _shut(stream) -> None:
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass  # already closed


def gemini_client(settings: NewsletterSettings, connection: Connection):
    """A google-genai client on our connection: API-key mode when WRITER_API_KEY is set,
    otherwise Vertex AI (the function's service account, found by google.auth)."""
    from google import genai  # noqa: PLC0415 (about 0.4 s: only when the writer is on)
    from google.genai import types  # noqa: PLC0415

    options = types.HttpOptions(
        base_url=settings.writer_base_url,
        timeout=int(settings.writer_stall_seconds * 1000),
        httpx_client=connection.client,
        # The SDK retries nothing unless asked. These retries cover the request until the
        # stream's first byte (a 429 or 5xx answer); an error mid-stream is not retried.
        retry_options=types.HttpRetryOptions(
            attempts=settings.writer_attempts,
            initial_delay=settings.writer_retry_delay_seconds,
            max_delay=max(settings.writer_retry_delay_seconds * 8, 1.0),
            http_status_codes=RETRY_STATUS_CODES,
        ),
    )
    if settings.writer_api_key:
        return genai.Client(vertexai=False, api_key=settings.writer_api_key, http_options=options)
    return genai.Client(
        vertexai=True,
        project=settings.writer_project,
        location=settings.writer_location,
        credentials=settings.writer_credentials,
        http_options=options,
    )


def _client_or_failure(settings: NewsletterSettings, connection: Connection):
    try:
        return gemini_client(settings, connection)
    except Exception as exc:  # a setting the SDK refuses, or no credentials found
        log.warning("Writer client not created", detail=f"{type(exc).__name__}: {exc}")
        raise WriterFailed(f"cannot set up the model's client ({type(exc).__name__})") from exc


def _generate(client, settings: NewsletterSettings, data: str, out: queue.Queue) -> None:
    """The helper thread: the SDK's stream, chunk by chunk, into `out`."""
    from google.genai import types  # noqa: PLC0415

    config = types.GenerateContentConfig(
        system_instruction=instructions(),
        response_mime_type="application/json",
        response_schema=SCHEMA,
        max_output_tokens=settings.writer_max_output_tokens,
        thinking_config=types.ThinkingConfig(thinking_budget=settings.writer_thinking_budget),
        temperature=0.3,
    )
    try:
        for chunk in client.models.generate_content_stream(model=settings.writer_model, contents=data, config=config):
            out.put(("chunk", chunk))
        out.put(("end", None))
    except Exception as exc:  # noqa: BLE001 (every failure reaches the job's thread)
        out.put(("error", exc))


def write_with_gemini(request, sections: list[Section], settings: NewsletterSettings, ctx) -> Written:
    ids = entry_ids(sections)
    if not ids:
        raise WriterFailed("no entries in range to write about")
    preview = PreviewStream(ctx.emit, "markdown", settings.writer_preview_seconds)
    preview.start(f"# {title_for(request.start, request.end)}\n\n_Written by {settings.writer_model}…_\n")
    connection = Connection(settings.writer_stall_seconds)
    stream = _Stream(ids, sections, preview, settings)
    try:
        client = _client_or_failure(settings, connection)
        out: queue.Queue = queue.Queue()
        worker = threading.Thread(
            target=_generate, args=(client, settings, prompt_data(request, sections, ids), out), daemon=True
        )
        worker.start()
        stream.follow(out, ctx)
    finally:
        connection.cut()  # a no-op after a finished stream; cuts a pending one off
    preview.flush(force=True)
    return stream.written(ctx)


class _Stream:
    """What the job's thread makes of the chunks as they arrive."""

    def __init__(self, ids, sections, preview: PreviewStream, settings: NewsletterSettings):
        self.ids = ids
        self.sections = sections
        self.preview = preview
        self.settings = settings
        self.scanner = ItemScanner()
        self.tokens: dict = {}
        self.model = settings.writer_model
        self._shown: set[str] = set()
        self._last_section: int | None = None

    def follow(self, out: queue.Queue, ctx) -> None:
        started = last_chunk = time.monotonic()
        timeout, stall = self.settings.writer_timeout_seconds, self.settings.writer_stall_seconds
        while True:
            if ctx.cancelled.is_set():
                raise JobCancelled()
            now = time.monotonic()
            if now - started > timeout:
                raise WriterFailed(f"timed out after {timeout:g} s (WRITER_TIMEOUT_SECONDS)")
            if now - last_chunk > stall:
                raise WriterFailed(stalled(self.settings))
            try:
                what, value = out.get(timeout=WAIT_STEP_SECONDS)
            except queue.Empty:
                self.preview.flush()
                continue
            if what == "end":
                return
            if what == "error":
                raise WriterFailed(failure_reason(value, self.settings)) from value
            last_chunk = time.monotonic()
            self.take(value)

    def take(self, chunk) -> None:
        feedback = getattr(chunk, "prompt_feedback", None)
        if feedback is not None and feedback.block_reason:
            raise WriterFailed(f"the model refused the prompt ({_name(feedback.block_reason)})")
        if chunk.usage_metadata is not None:
            usage = chunk.usage_metadata
            self.tokens = {
                "prompt": usage.prompt_token_count or 0,
                "output": usage.candidates_token_count or 0,
                "thinking": usage.thoughts_token_count or 0,  # billed as output
                "total": usage.total_token_count or 0,
            }
        self.model = chunk.model_version or self.model
        candidate = (chunk.candidates or [None])[0]
        if candidate is None:
            return
        parts = candidate.content.parts if candidate.content and candidate.content.parts else []
        text = "".join(part.text or "" for part in parts if not part.thought)
        for item in self.scanner.feed(text):
            self.show(item)
        reason = _name(candidate.finish_reason) if candidate.finish_reason else None
        if reason in STOPPED:
            raise WriterFailed(f"the model stopped writing ({reason})")
        if reason == "MAX_TOKENS":
            raise WriterFailed("the answer was cut off at WRITER_MAX_OUTPUT_TOKENS")

    def show(self, item: dict) -> None:
        entry_id = item.get("entry")
        if entry_id not in self.ids or entry_id in self._shown or not isinstance(item.get("summary"), str):
            return
        self._shown.add(entry_id)
        index, entry = self.ids[entry_id]
        summary, _ = without_links(item["summary"])
        lines = []
        if index != self._last_section:
            self._last_section = index
            lines.append(f"\n## {md(self.sections[index].source_name)}\n\n")
        title = f"[{md(entry.title)}]({md_url(entry.link)})" if entry.link else md(entry.title)
        lines.append(f"- {title} ({day(entry.published)})\n  {md(summary)}\n")
        self.preview.add("".join(lines))

    def written(self, ctx) -> Written:
        try:
            answer = json.loads(self.scanner.text)
        except ValueError:
            raise WriterFailed("the answer was not the JSON asked for") from None
        items = answer.get("summaries") if isinstance(answer, dict) else None
        if not isinstance(items, list):
            raise WriterFailed("the answer was not the JSON asked for (no summaries list)")
        chosen: dict[int, list[Entry]] = {}
        seen, unknown, removed = set(), 0, 0
        for item in items:
            entry_id = item.get("entry") if isinstance(item, dict) else None
            summary = item.get("summary") if isinstance(item, dict) else None
            if entry_id not in self.ids or entry_id in seen or not isinstance(summary, str):
                unknown += 1
                continue
            seen.add(entry_id)
            index, entry = self.ids[entry_id]
            clean, links = without_links(summary)
            removed += links
            chosen.setdefault(index, []).append(dataclasses.replace(entry, summary=clean))
        if not chosen:
            raise WriterFailed("the answer summarised none of the entries")
        if removed:
            ctx.log(f"Removed {removed} link(s) the model wrote: the newsletter links only to the entries", "warning")
        if unknown:
            ctx.log(f"Skipped {unknown} summary(ies) naming no entry of this newsletter", "warning")
        sections = [
            Section(section.source_id, section.source_name, tuple(chosen.get(index, ())))
            for index, section in enumerate(self.sections)
        ]
        return Written(sections, self.model, self.tokens)


def _name(value) -> str:
    return getattr(value, "name", None) or str(value)


def stalled(settings: NewsletterSettings) -> str:
    return f"stalled: no chunk for {settings.writer_stall_seconds:g} s (WRITER_STALL_SECONDS)"


def failure_reason(exc: BaseException, settings: NewsletterSettings) -> str:
    """A short reason for the job's log (which anyone with the job id reads): no host names."""
    from google.genai import errors  # noqa: PLC0415 (loaded already: the SDK raised it)

    if isinstance(exc, errors.APIError):
        status = f"{exc.code} {exc.status or ''}".strip()
        if exc.code == 429:
            return f"rate limited ({status}) after {settings.writer_attempts} attempt(s) (WRITER_ATTEMPTS)"
        message = (exc.message or "").split("\n")[0][:200]
        return f"model error {status}: {message}" if message else f"model error {status}"
    name = type(exc).__name__
    if "Timeout" in name:  # the HTTP client's read timeout is the stall limit too
        return stalled(settings)
    if "Connect" in name:
        return f"cannot reach the model ({name})"
    return f"the model's stream broke ({name})"
