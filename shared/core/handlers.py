"""Handlers by kind: the built-in kinds, which register themselves, and JOB_HANDLERS.

A handler is a plain callable `handler(payload: dict, ctx) -> JSON-serialisable result`.
It may carry a `validate(payload, session)` attribute that raises ValidationError; enqueue
calls it so that a bad payload is refused with a 400 instead of failing later. It may also
declare its payload's fields, as a `fields` attribute (a collection of names): a payload
with any other field is then refused with a 400 naming each, before anything is stored.

The core names no kind. Each built-in kind is a package under `shared/kinds/` that calls
`register_kind` when imported, bringing its handler and, if it has tables of its own, its
migrations and SQL statements; `builtin_kinds()` imports that folder once, by name.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.core import db
from shared.core.errors import SettingsError, ValidationError
from shared.core.settings import Settings
from shared.core.storable import printable_field

Handler = Callable[..., Any]
MAX_NAMED_FIELDS = 20  # unknown fields named in one answer (a body may hold thousands)

# Where the built-in kinds live: a plugin folder, imported by name so that no core module
# depends on a kind (tests/test_layers.py holds the core to that).
BUILTIN_KINDS_PACKAGE = "shared.kinds"


@dataclass(frozen=True)
class Kind:
    """A built-in job kind. The handler is a "module:callable" imported on first use, so a
    function that never runs the kind pays nothing for it."""

    name: str
    handler: str
    migrations: Path | None = None  # NNNN_name.sql files, applied after the core's
    statements: Path | None = None  # name.sql files, run by name like the core's
    # The kind's own settings: a frozen dataclass whose fields are declared with
    # shared.core.settings.setting, read at start with the core's (read_settings below); its
    # handler sees them as `ctx.settings`.
    settings: type | None = None
    # The kind that a request naming no kind asks for (the seed's contract: a newsletter
    # request). At most one kind claims it.
    default: bool = False
    # The dashboard's form for this kind: `form(session)` returns what the page shows, read
    # on the dashboard's GET with a pooled connection: {"title", "submit", "fields": [field,
    # ...], "plainWords": [[field, pattern, words], ...]}. The page builds it from that alone
    # (docs/handlers.md lists the field types) and posts {"kind": <kind>, <name>: <value>, ...}.
    form: Callable[[Any], dict] | None = None
    # How the pages show a job of this kind, a dict: its "label" ("Newsletter"), "plural",
    # "title" on its status page, "start" (the dashboard link's words), the "summary" of what
    # was asked for on its archive cards (parts read from the job's payload or result),
    # "document" when its result is a document the archive lists under Finished, and for the
    # status page its "steps" (those its handler reports between Processing and Complete) and
    # "noun" ("generation": "Cancel generation"; default "job").
    card: dict | None = None
    # Tables the card's summary names values from, `card_data(session)` ({"sources": {id:
    # name}} for the newsletter). Read on the archive's GET.
    card_data: Callable[[Any], dict] | None = None


_registered: dict[str, Kind] = {}
_registered_lock = threading.Lock()


def register_kind(kind: Kind) -> None:
    """Called by each kind's package when imported."""
    with _registered_lock:
        if kind.name in _registered and _registered[kind.name] != kind:
            raise RuntimeError(f"two kinds are named {kind.name!r}")
        _registered[kind.name] = kind
    if kind.statements is not None:
        db.add_statements(kind.statements)


def builtin_kinds() -> dict[str, Kind]:
    importlib.import_module(BUILTIN_KINDS_PACKAGE)  # each kind registers itself on import
    with _registered_lock:
        return dict(_registered)


def read_settings(env: Mapping[str, str] | None = None) -> Settings:
    """The core's settings and every built-in kind's, in one read: one message names every
    bad variable, the core's and the kinds'. (The registry reads the kinds' settings, not the
    settings module: the core's settings import nothing of the core above them.)"""
    return Settings.from_env(env, kinds=kind_settings_classes())


def kind_settings_classes() -> dict[str, type]:
    """Each built-in kind's settings class, by kind name."""
    return {name: kind.settings for name, kind in sorted(builtin_kinds().items()) if kind.settings is not None}


def default_kind() -> str | None:
    """The kind a request that names none is; None when no kind claims it."""
    claims = sorted(name for name, kind in builtin_kinds().items() if kind.default)
    if len(claims) > 1:
        raise RuntimeError(f"more than one kind claims to be the default: {', '.join(claims)}")
    return claims[0] if claims else None


def kind_forms(session, kinds: Iterable[str]) -> dict[str, dict]:
    """The dashboard forms of those kinds that bring one, by kind name."""
    registered = builtin_kinds()
    return {
        name: registered[name].form(session)
        for name in sorted(kinds)
        if name in registered and registered[name].form is not None
    }


def kind_cards(session=None) -> dict[str, dict]:
    """Each kind's card (Kind.card) by kind name, with the tables it names values from
    (Kind.card_data) under "data" when a session is given to read them."""
    cards = {}
    for name, kind in sorted(builtin_kinds().items()):
        card = dict(kind.card or {})
        if session is not None and kind.card_data is not None:
            card["data"] = kind.card_data(session)
        if card:
            cards[name] = card
    return cards


def builtin_handlers() -> dict[str, str]:
    return {name: kind.handler for name, kind in builtin_kinds().items()}


def import_callable(spec: str) -> Handler:
    module_name, _, attribute = spec.partition(":")
    module = importlib.import_module(module_name)
    handler = getattr(module, attribute)
    if not callable(handler):
        raise TypeError(f"{spec} is not callable")
    return handler


class HandlerRegistry:
    def __init__(self, handlers: Mapping[str, Handler | str]):
        self._specs = dict(handlers)
        self._loaded: dict[str, Handler] = {}
        self._lock = threading.Lock()

    @property
    def kinds(self) -> list[str]:
        return sorted(self._specs)

    def __contains__(self, kind: str) -> bool:
        return kind in self._specs

    def get(self, kind: str) -> Handler:
        """The handler for a kind; KeyError when there is none."""
        with self._lock:
            handler = self._loaded.get(kind)
            if handler is None:
                spec = self._specs[kind]
                handler = import_callable(spec) if isinstance(spec, str) else spec
                self._loaded[kind] = handler
            return handler

    def validate(self, kind: str, payload: dict, session) -> None:
        if kind not in self._specs:
            # Not the list of kinds: which handlers an instance has is not the caller's business.
            raise ValidationError.of([("kind", f"{str(kind)[:100]!r} is not a kind this queue accepts")])
        handler = self.get(kind)
        declared = getattr(handler, "fields", None)
        if declared is not None and (unknown := [field for field in payload if field not in declared]):
            raise ValidationError.of(
                [
                    (printable_field(field), f"is not a field of a {kind} job (its fields: {', '.join(declared)})")
                    for field in unknown[:MAX_NAMED_FIELDS]
                ]
            )
        validate = getattr(handler, "validate", None)
        if validate is not None:
            validate(payload, session)

    def restricted_to(self, kinds: tuple[str, ...]) -> HandlerRegistry:
        """The same handlers, only for these kinds ("*": all). SettingsError naming a kind
        that has no handler, so that a typo in ENQUEUE_KINDS fails at start."""
        if kinds == ("*",):
            return self
        unknown = [kind for kind in kinds if kind not in self._specs]
        if unknown:
            raise SettingsError(f"Bad settings: ENQUEUE_KINDS names kinds with no handler: {', '.join(unknown)}")
        return HandlerRegistry({kind: self._specs[kind] for kind in kinds})

    @classmethod
    def from_settings(cls, settings: Settings) -> HandlerRegistry:
        """Built-ins plus JOB_HANDLERS. Those are imported now: a typo fails at start."""
        handlers: dict[str, Handler | str] = dict(builtin_handlers())
        problems = []
        for kind, spec in settings.job_handlers:
            try:
                handlers[kind] = import_callable(spec)
            except Exception as exc:  # noqa: BLE001 (any import failure is a settings problem)
                problems.append(f"JOB_HANDLERS: {kind}={spec} cannot be loaded ({exc})")
        if problems:
            raise SettingsError("Bad settings: " + "; ".join(problems))
        return cls(handlers)
