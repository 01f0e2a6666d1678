"""Handlers by kind: the built-in ones and those named in JOB_HANDLERS.

A handler is a plain callable `handler(payload: dict, ctx) -> JSON-serialisable result`.
It may carry a `validate(payload, session)` attribute that raises ValidationError; enqueue
calls it so that a bad payload is refused with a 400 instead of failing later.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping
from typing import Any

from shared.errors import SettingsError, ValidationError
from shared.settings import Settings

Handler = Callable[..., Any]

# Built-ins are imported on first use, so that a function which never runs them pays nothing.
BUILTIN_HANDLERS: dict[str, str] = {
    "newsletter": "shared.newsletter.handler:generate_newsletter",
    "demo": "shared.demo:demo_handler",
}


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
            known = ", ".join(self.kinds)
            raise ValidationError.of([("kind", f"no handler for kind {kind!r} (known: {known})")])
        validate = getattr(self.get(kind), "validate", None)
        if validate is not None:
            validate(payload, session)

    @classmethod
    def from_settings(cls, settings: Settings) -> HandlerRegistry:
        """Built-ins plus JOB_HANDLERS. Those are imported now: a typo fails at start."""
        handlers: dict[str, Handler | str] = dict(BUILTIN_HANDLERS)
        problems = []
        for kind, spec in settings.job_handlers:
            try:
                handlers[kind] = import_callable(spec)
            except Exception as exc:  # noqa: BLE001 (any import failure is a settings problem)
                problems.append(f"JOB_HANDLERS: {kind}={spec} cannot be loaded ({exc})")
        if problems:
            raise SettingsError("Bad settings: " + "; ".join(problems))
        return cls(handlers)
