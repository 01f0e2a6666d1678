"""Serves the demo feeds in local/feeds over HTTP on loopback, so the demo needs no internet.

The shipped feeds are dated around the first week of January 2025, which `make demo` and the
tests ask for. Under `make dev` a person uses the dashboard, whose default range is the last
seven days: there the feeds are served with every date moved by the same whole number of days
(`FIXED_WEEK_ENDS` becomes today, UTC), so the dashboard's defaults find the same stories the
demo finds in its fixed week, and the entry dated outside that week stays outside.
"""

from __future__ import annotations

import functools
import re
import threading
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FEEDS_DIR = Path(__file__).parent / "feeds"
DEMO_SOURCES = (
    ("Demo: Engineering Blog", "engineering.xml"),
    ("Demo: Product Updates", "product.xml"),
    ("Demo: Community Digest", "community.xml"),
)
FIXED_WEEK_ENDS = date(2025, 1, 7)  # the last day of `make demo`'s range (local/demo.py)

# RSS dates (RFC 822) and Atom dates (RFC 3339), the two forms the shipped feeds use.
RSS_DATE = re.compile(rb"(<pubDate>)([^<]+)(</pubDate>)")
ATOM_DATE = re.compile(rb"(<(?:published|updated)>)([^<]+)(</(?:published|updated)>)")


def days_to_today(today: date | None = None) -> int:
    """How far to move the shipped dates so that their week ends today."""
    return ((today or datetime.now(UTC).date()) - FIXED_WEEK_ENDS).days


def shift_dates(feed: bytes, days: int) -> bytes:
    """The feed with each entry's date `days` later, in the form it was written in."""
    delta = timedelta(days=days)

    def rss(match: re.Match) -> bytes:
        moved = parsedate_to_datetime(match[2].decode()) + delta
        return match[1] + format_datetime(moved).encode() + match[3]

    def atom(match: re.Match) -> bytes:
        text = match[2].decode()
        moved = (datetime.fromisoformat(text) + delta).isoformat()
        if text.endswith("Z"):
            moved = moved.replace("+00:00", "Z")
        return match[1] + moved.encode() + match[3]

    return ATOM_DATE.sub(atom, RSS_DATE.sub(rss, feed))


class _FeedHandler(SimpleHTTPRequestHandler):
    relative_to_today = False  # moved at each request: a `make dev` left running past midnight follows

    def log_message(self, format, *args):
        pass

    def do_GET(self) -> None:
        feed = FEEDS_DIR / self.path.lstrip("/")
        if not self.relative_to_today or feed.parent != FEEDS_DIR or feed.suffix != ".xml" or not feed.is_file():
            super().do_GET()
            return
        body = shift_dates(feed.read_bytes(), days_to_today())
        self.send_response(200)
        self.send_header("Content-Type", self.guess_type(str(feed)))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve_feeds(port: int, relative_to_today: bool = False) -> ThreadingHTTPServer:
    """Serve the demo feeds on `port` (0: any free one), their dates fixed or moved to end today."""
    handler_class = type("FeedHandler", (_FeedHandler,), {"relative_to_today": relative_to_today})
    handler = functools.partial(handler_class, directory=str(FEEDS_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, name="demo-feeds", daemon=True).start()
    return server


def seed_demo_sources(session, port: int) -> list:
    """Add (or point at this port) the demo sources; on a new database they get ids 1, 2, 3."""
    from shared.kinds.newsletter.sources import add_source  # noqa: PLC0415

    return [add_source(session, name, f"http://127.0.0.1:{port}/{file}") for name, file in DEMO_SOURCES]
