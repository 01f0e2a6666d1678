"""What PostgreSQL can store: JSON that Python parses is not always JSON that jsonb or a
text column accepts. A NUL character (`\\u0000`), a lone surrogate (`\\ud800`, which is not
UTF-8 at all) and NaN or Infinity (which Python's json reads, and JSON does not have) are
refused by the database; found here first, they become a 400 naming the field instead of
a failed statement.
"""

from __future__ import annotations

import math
from typing import Any

_NOT_TEXT = "must not contain a NUL character (\\u0000) or a lone surrogate (\\ud800-\\udfff)"


def text_problem(value: str) -> str | None:
    """Why PostgreSQL would refuse this string, or None."""
    if "\x00" in value:
        return _NOT_TEXT
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return _NOT_TEXT
    return None


def printable_field(name: str) -> str:
    """A field name that is safe to echo in an error: the refused characters replaced."""
    return "".join("\ufffd" if ch == "\x00" or "\ud800" <= ch <= "\udfff" else ch for ch in name)[:200]


# How deep a caller's JSON may nest (objects and arrays inside each other; the body itself
# is level 1). No job needs more, and far deeper documents (about 970 levels, under the body
# limit) break the driver that reads them back (pg8000 parses json with recursion).
MAX_JSON_DEPTH = 64
TOO_DEEP = f"nests deeper than {MAX_JSON_DEPTH} levels of objects and arrays"


def json_problems(value: Any, path: str = "") -> list[tuple[str, str]]:
    """(field, message) for each string, key or number in `value` that jsonb would refuse,
    and for each object or array nested past MAX_JSON_DEPTH.

    Fields are named by their path ("a.b[2]"); the walk is iterative, so a deep document
    (the body limit bounds its size) cannot exhaust the stack.
    """
    problems: list[tuple[str, str]] = []
    pending: list[tuple[str, Any, int]] = [(path, value, 1)]
    while pending:
        where, item, depth = pending.pop()
        if isinstance(item, (dict, list)) and depth > MAX_JSON_DEPTH:
            problems.append((printable_field(where), TOO_DEEP))
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and (problem := text_problem(key)):
                    problems.append((printable_field(child_path), f"(a field name) {problem}"))
                pending.append((child_path, child, depth + 1))
        elif isinstance(item, list):
            pending.extend((f"{where}[{index}]", child, depth + 1) for index, child in enumerate(item))
        elif isinstance(item, str):
            if problem := text_problem(item):
                problems.append((printable_field(where), problem))
        elif isinstance(item, float) and not math.isfinite(item):
            problems.append((printable_field(where), "must be a finite number (JSON has no NaN or Infinity)"))
    return sorted(problems)


def nesting_problems(value: Any) -> list[tuple[str, str]]:
    """(field, message) for each object or array nested past MAX_JSON_DEPTH (the edge's check
    of every body, before anything reads it)."""
    return [(field, message) for field, message in json_problems(value) if message == TOO_DEEP]
