"""From feed bytes to newsletter sections: parse (feedparser), keep the entries inside the
date range, and summarise each in plain text."""

from __future__ import annotations

import calendar
import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from xml.sax import SAXException

import feedparser

SUMMARY_CHARS = 280


@dataclass(frozen=True)
class Entry:
    title: str
    link: str | None
    published: datetime
    summary: str


@dataclass(frozen=True)
class Section:
    source_id: int
    source_name: str
    entries: tuple[Entry, ...]


class _TextOnly(HTMLParser):
    """Collects the text of an HTML fragment, dropping tags, scripts and styles."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def plain_text(fragment: str, limit: int = SUMMARY_CHARS) -> str:
    parser = _TextOnly()
    parser.feed(fragment or "")
    parser.close()
    text = re.sub(r"\s+", " ", html.unescape(" ".join(parser.parts))).strip()
    if len(text) > limit:
        text = text[: limit - 1].rsplit(" ", 1)[0] + "…"
    return text


def _published(entry) -> datetime | None:
    # feedparser turns every date format and time zone it knows into a UTC struct_time.
    parsed = entry.get("published_parsed") or entry.get("updated_parsed")
    if not parsed:
        return None
    return datetime.fromtimestamp(calendar.timegm(parsed), UTC)


class BrokenFeed(Exception):
    pass


def entries_in_range(body: bytes, start: datetime, end: datetime) -> tuple[list[Entry], int]:
    """(entries published in [start, end), newest first; how many had no date)."""
    feed = feedparser.parse(body)
    problem = feed.get("bozo_exception")
    # feedparser recovers what it can from malformed XML; we would rather skip a broken feed
    # than print half of it. Milder complaints (a wrong declared encoding) are fine.
    if isinstance(problem, SAXException) or not (feed.version or feed.entries):
        detail = str(problem).split("\n")[0] if problem else "no RSS or Atom content"
        raise BrokenFeed(f"not a readable RSS or Atom feed ({detail})")
    kept, undated = [], 0
    for item in feed.entries:
        when = _published(item)
        if when is None:
            undated += 1
            continue
        if start <= when < end:
            title = plain_text(item.get("title", ""), limit=300) or "(untitled)"
            summary = plain_text(item.get("summary", "") or item.get("description", ""))
            kept.append(Entry(title, item.get("link"), when, summary))
    kept.sort(key=lambda entry: entry.published, reverse=True)
    return kept, undated
