"""Watching outbound connections in tests: every socket connect this process makes, seen
through Python's audit hooks (sys.addaudithook), and a resolver stub that maps test host
names to chosen addresses without touching DNS."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_watchers: list[list] = []
_installed = False


def _hook(event: str, args: tuple) -> None:
    if event == "socket.connect" and _watchers:
        with _lock:
            for seen in _watchers:
                seen.append(args[1])


@contextmanager
def connects() -> Iterator[list]:
    """The addresses of every socket connect made (by any thread) inside the block."""
    global _installed
    with _lock:
        if not _installed:  # an audit hook cannot be removed: install one, once
            sys.addaudithook(_hook)
            _installed = True
        seen: list = []
        _watchers.append(seen)
    try:
        yield seen
    finally:
        with _lock:
            _watchers.remove(seen)


@contextmanager
def hosts(mapping: dict[str, list[str]], monkeypatch) -> Iterator[list[str]]:
    """socket.getaddrinfo answers `mapping`'s names with its addresses (no address: the name
    does not resolve), others as usual; yields the names looked up, in order."""
    real = socket.getaddrinfo
    looked_up: list[str] = []

    def fake(host, port, *args, **kwargs):
        if host in mapping:
            looked_up.append(host)
            if not mapping[host]:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return [
                (socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (ip, port, 0, 0) if ":" in ip else (ip, port))
                for ip in mapping[host]
            ]  # fmt: skip
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    yield looked_up
