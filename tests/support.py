"""What several test modules share that is not a fixture: the test token, database URLs and a
rate-limit window that a test cannot straddle.
(Test modules import this, never conftest.py: pytest loads conftest itself.)"""

from __future__ import annotations

import os
import time
from urllib.parse import urlsplit, urlunsplit

from shared.core.db import Session, open_session

API_TOKEN = "test-token-0123456789"


def with_database(url: str, database: str) -> str:
    """The same server's URL, naming another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


def scratch_name(name: str) -> str:
    """A database name of this process's own: test runs and pytest-xdist workers may share a server."""
    return f"{name}_{os.getpid()}"


def admin_session(url: str) -> Session:
    return open_session(url, timeout=60)


def window_far_from_its_end() -> int:
    """A rate-limit window length (seconds) whose current window, on this clock, has ten minutes
    to run: windows start at whole multiples of their length, and a test that straddled one's end
    would see its counts start again (by chance, more often on a loaded machine)."""
    window = 3600
    while window - time.time() % window < 600:
        window += 1000
    return window
