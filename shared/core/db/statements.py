"""The statement registry: every lifecycle statement is a `name.sql` file (the core's in
shared/core/sql/, each kind's in its own folder), loaded once and run by name.

A part that several statements share (the claims' fair pick and the start of an attempt) is
written once, in the folder's parts/, and a statement takes it in with a line that is only
`-- include: parts/<name>.sql`: one text for what must not drift between the copies.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path

import pg8000.native

SQL_DIR = Path(__file__).parent.parent / "sql"
STATEMENTS: dict[str, str] = {}
_statements_lock = threading.Lock()
INCLUDE = re.compile(r"^-- include: (parts/[\w-]+\.sql)$", re.MULTILINE)


def add_statements(directory: Path) -> None:
    """Make every `name.sql` in `directory` runnable by name (the core's, and each kind's)."""
    with _statements_lock:
        for path in sorted(directory.glob("*.sql")):
            text = with_parts(path.read_text(), directory)
            if STATEMENTS.get(path.stem, text) != text:
                raise RuntimeError(f"two SQL statements are named {path.stem!r}")
            STATEMENTS[path.stem] = text


def with_parts(text: str, directory: Path) -> str:
    """The statement with each `-- include: parts/<name>.sql` line replaced by that part."""
    return INCLUDE.sub(lambda line: (directory / line.group(1)).read_text().rstrip("\n"), text)


add_statements(SQL_DIR)


# Named SQL turned into pg8000's positional form once per process (pure text work).
_converted: dict[str, tuple[str, Callable]] = {}


def positional(sql: str) -> tuple[str, Callable]:
    """The statement in pg8000's positional form and the function that orders its values."""
    converted = _converted.get(sql)
    if converted is None:
        converted = _converted[sql] = pg8000.native.to_statement(sql)
    return converted
