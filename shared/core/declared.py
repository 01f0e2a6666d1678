"""Declared settings: each setting is one dataclass field made by `setting(...)` (its
environment variable, default, bounds and one line of doc); `SettingsReader` reads any class
of them, collecting every problem so that one message names them all, and `markdown_table`
writes their documentation. The core's settings (settings.py) and each kind's are declared so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import field
from typing import Any

from shared.core.errors import SettingsError


def setting(
    env: str,
    default: Any = None,
    *,
    doc: str,
    minimum: float | None = None,
    maximum: float | None = None,
    choices: tuple[str, ...] | None = None,
    derive: Callable[[dict], Any] | None = None,
    read: Callable[[Any, str, dict], Any] | None = None,
    shown: str | None = None,
    secret: bool = False,
) -> Any:
    """One setting's declaration, as a dataclass field. The value is read by the field's type
    (float, int, bool: 1/0, str), or by `read(reader, variable, values so far)`. `derive(values so far)` is the default when the variable is unset
    and the default depends on another setting; `shown` is how the table shows such a
    default. A secret never shows in the object's repr."""
    metadata = {
        "env": env,
        "doc": doc,
        "minimum": minimum,
        "maximum": maximum,
        "choices": choices,
        "derive": derive,
        "read": read,
        "shown": shown,
    }
    if isinstance(default, (tuple, str, int, float, bool, type(None))):
        return field(default=default, metadata=metadata, repr=not secret)
    return field(default_factory=lambda: default, metadata=metadata, repr=not secret)


def declarations(cls: type) -> list[dataclasses.Field]:
    """The fields of a settings class that are declared settings."""
    return [declared for declared in dataclasses.fields(cls) if "env" in declared.metadata]


class SettingsReader:
    """Reads declared settings and collects every problem before failing, so one run names them all."""

    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.env.get(name)
        return value if value not in (None, "") else None

    def is_set(self, name: str) -> bool:
        return self.raw(name) is not None

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def raise_problems(self) -> None:
        if self.problems:
            raise SettingsError("Bad settings: " + "; ".join(self.problems))

    def read_declared(self, cls: type) -> dict[str, Any]:
        """Every declared setting of `cls`, in declaration order (a derived default sees the
        values before it)."""
        values: dict[str, Any] = {}
        for declared in declarations(cls):
            values[declared.name] = self._read_one(declared, values)
        return values

    def read_checked(self, cls: type) -> Any:
        """An instance of a kind's settings class: its declared settings, then its own rules
        between them (`CHECKS`, a class attribute of functions `check(values, reader)`);
        fields it does not declare keep their defaults."""
        values = self.read_declared(cls)
        for check in getattr(cls, "CHECKS", ()):
            check(values, self)
        return cls(**values)

    def _read_one(self, declared: dataclasses.Field, values: dict) -> Any:
        meta = declared.metadata
        name = meta["env"]
        if meta["read"] is not None:
            return meta["read"](self, name, values)
        default = declared.default if declared.default is not dataclasses.MISSING else declared.default_factory()
        raw = self.raw(name)
        if raw is None:
            return meta["derive"](values) if meta["derive"] is not None else default
        # The annotation as written ("int"), whether or not its module postpones annotations.
        kind = declared.type if isinstance(declared.type, str) else getattr(declared.type, "__name__", "")
        if kind == "bool":
            return self._flag(name, raw)
        if meta["choices"] is not None:
            return self._choice(name, raw, meta["choices"], default)
        if kind in ("int", "float"):
            return self._number(name, raw, meta, integer=kind == "int", default=default)
        return raw

    def _flag(self, name: str, raw: str) -> bool:
        """On when set to 1 or true; off when unset; anything else is a problem to name."""
        if raw.lower() not in ("1", "true", "0", "false"):
            self.problems.append(f"{name} must be 1 or 0, got {raw!r}")
        return raw.lower() in ("1", "true")

    def _choice(self, name: str, raw: str, choices: tuple[str, ...], default: str) -> str:
        by_lower = {choice.lower(): choice for choice in choices}
        if raw.lower() not in by_lower:
            self.problems.append(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
            return default
        return by_lower[raw.lower()]

    def _number(self, name: str, raw: str, meta: Mapping, integer: bool, default: float) -> float:
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            kind = "a whole number" if integer else "a number"
            self.problems.append(f"{name} must be {kind}, got {raw!r}")
            return default
        if meta["minimum"] is not None and value < meta["minimum"]:
            self.problems.append(f"{name} must be at least {meta['minimum']}, got {raw!r}")
            return default
        if meta["maximum"] is not None and value > meta["maximum"]:
            self.problems.append(f"{name} must be at most {meta['maximum']:g}, got {raw!r}")
            return default
        return value


# -- the documentation's table -----------------------------------------------------------------


def _shown(declared: dataclasses.Field) -> str:
    meta = declared.metadata
    if meta["shown"] is not None:
        return meta["shown"]
    default = declared.default
    if default is None:
        return "—"
    if isinstance(default, bool):
        return "on" if default else "off"
    if isinstance(default, str):
        return f"`{default}`"
    if isinstance(default, float):
        return f"{default:g}"
    return str(default)


def _bounds(declared: dataclasses.Field) -> str:
    meta = declared.metadata
    parts = []
    if meta["minimum"] is not None:
        parts.append(f"≥ {meta['minimum']:g}")
    if meta["maximum"] is not None:
        parts.append(f"≤ {meta['maximum']:g}")
    if meta["choices"] is not None:
        parts.append(", ".join(f"`{choice}`" for choice in meta["choices"]))
    return "; ".join(parts)


def markdown_table(classes: Mapping[str, type]) -> str:
    """The settings table of docs/settings.md: one row per declared setting of each class
    (the core's first, then each kind's, by kind name)."""
    rows = ["| variable | default | bounds | meaning |", "| --- | --- | --- | --- |"]
    for owner, cls in classes.items():
        for declared in declarations(cls):
            meaning = declared.metadata["doc"] if owner == "core" else f"({owner}) {declared.metadata['doc']}"
            rows.append(f"| `{declared.metadata['env']}` | {_shown(declared)} | {_bounds(declared)} | {meaning} |")
    return "\n".join(rows) + "\n"
