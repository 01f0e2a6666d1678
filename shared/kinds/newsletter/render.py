"""Rendering the newsletter with Jinja2: Markdown, or HTML with autoescaping on, so a feed
cannot inject markup (a title carrying <script> arrives as text)."""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import jinja2

from shared.kinds.newsletter.compose import Section

TEMPLATES = Path(__file__).parent / "templates"
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#|])")


def md(text: str) -> str:
    """Escape the characters that would turn feed text into Markdown structure or HTML."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def safe_url(url: str) -> str:
    """Only http(s) links: a javascript: or data: URL becomes a harmless '#'."""
    return url if urlsplit(url or "").scheme in ("http", "https") else "#"


def md_url(url: str) -> str:
    return safe_url(url).replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def day(moment: datetime) -> str:
    return f"{moment:%b} {moment.day}, {moment.year}"


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(md=md, md_url=md_url, safe_url=safe_url, day=day)
    return env


def title_for(start: date, end: date) -> str:
    if start == end:
        return f"Newsletter for {start:%B} {start.day}, {start.year}"
    if (start.year, start.month) == (end.year, end.month):
        return f"Newsletter for {start:%B} {start.day}–{end.day}, {start.year}"
    return f"Newsletter for {start:%B} {start.day}, {start.year} – {end:%B} {end.day}, {end.year}"


def render(output_format: str, start: date, end: date, sections: list[Section], failed: list[dict]) -> str:
    template = environment().get_template("newsletter.html.j2" if output_format == "html" else "newsletter.md.j2")
    count = sum(len(section.entries) for section in sections)
    subtitle = f"{count} {'story' if count == 1 else 'stories'} from {len(sections)} {'source' if len(sections) == 1 else 'sources'}"
    return template.render(title=title_for(start, end), subtitle=subtitle, sections=sections, failed=failed)
