"""Serves the demo feeds in local/feeds over HTTP on loopback, so the demo needs no internet."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FEEDS_DIR = Path(__file__).parent / "feeds"
DEMO_SOURCES = (
    ("Demo: Engineering Blog", "engineering.xml"),
    ("Demo: Product Updates", "product.xml"),
    ("Demo: Community Digest", "community.xml"),
)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


def serve_feeds(port: int) -> ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(FEEDS_DIR))
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, name="demo-feeds", daemon=True).start()
    return server


def seed_demo_sources(session, port: int) -> list:
    """Add (or point at this port) the demo sources; on a new database they get ids 1, 2, 3."""
    from shared.kinds.newsletter.sources import add_source  # noqa: PLC0415

    return [add_source(session, name, f"http://127.0.0.1:{port}/{file}") for name, file in DEMO_SOURCES]
