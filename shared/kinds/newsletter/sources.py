"""Newsletter sources in the database: the feeds a request selects by id."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.core.db import Session
from shared.core.errors import NotFound, ValidationError


@dataclass(frozen=True)
class Source:
    id: int
    name: str
    feed_url: str
    active: bool

    @classmethod
    def from_row(cls, row: dict) -> Source:
        return cls(row["id"], row["name"], row["feed_url"], row["active"])


def add_source(session: Session, name: str, feed_url: str) -> Source:
    problems = []
    if not name or len(name) > 200:
        problems.append(("name", "must be 1 to 200 characters"))
    parts = urlsplit(feed_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        problems.append(("feedUrl", "must be an http or https URL"))
    if problems:
        raise ValidationError.of(problems)
    return Source.from_row(session.row("add_source", name=name, feed_url=feed_url))


def list_sources(session: Session) -> list[Source]:
    return [Source.from_row(row) for row in session.rows("list_sources")]


def find_sources(session: Session, ids: list[int]) -> dict[int, Source]:
    return {row["id"]: Source.from_row(row) for row in session.rows("find_sources", ids=list(ids))}


def disable_source(session: Session, source_id: int) -> Source:
    row = session.row("disable_source", id=source_id)
    if row is None:
        raise NotFound(f"No source with id {source_id}")
    return Source.from_row(row)


def remove_source(session: Session, source_id: int) -> Source:
    row = session.row("remove_source", id=source_id)
    if row is None:
        raise NotFound(f"No source with id {source_id}")
    return Source.from_row(row)
