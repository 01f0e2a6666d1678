"""What several test modules share that is not a fixture: the test token and database URLs.
(Test modules import this, never conftest.py: pytest loads conftest itself.)"""

from __future__ import annotations

import os
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
