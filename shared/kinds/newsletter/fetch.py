"""Downloading a feed with a deadline, a size limit, and a prompt stop on cancel.

The download runs in a helper thread while the job's thread waits on `cancelled`: a cancel,
or the overall deadline, ends the wait at once even while a slow server is mid-response
(a socket timeout alone would not: a server can drip one byte a second for ever).

Every connection, the first and each redirect's, goes through the guard that webhooks use
(shared.core.netguard): http or https to a public address, connected to the address that
was checked. A feed on a private network needs the operator's explicit opt-out,
FEED_ALLOW_PRIVATE=1 (the local stack sets it: its demo feeds are served on loopback).

What goes wrong is said twice: a short public reason (it reaches the job's log, which
anyone with the job id reads) and a detail for the server log only, since connection
errors name hosts and addresses.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from http import HTTPStatus
from urllib.parse import urlsplit

from shared.core import netguard
from shared.core.errors import JobCancelled

USER_AGENT = "jobqueue-newsletter/0.1 (+https://github.com/)"
CHUNK = 64 * 1024


class FeedError(Exception):
    """Why one source could not be read (the newsletter goes on without it). str() is the
    public reason; `detail` may name hosts and addresses and goes to the server log only."""

    def __init__(self, reason: str, detail: str | None = None):
        super().__init__(reason)
        self.detail = detail or reason


class _CheckedHTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        self.sock = netguard.connect_checked(self.host, self.port, netguard.FEEDS, _seconds(self.timeout))


class _CheckedHTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        sock = netguard.connect_checked(self.host, self.port, netguard.FEEDS, _seconds(self.timeout))
        self.sock = netguard.wrap_tls(sock, self.host, self._context)


def _seconds(timeout) -> float | None:
    return timeout if isinstance(timeout, int | float) else None


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req):
        return self.do_open(_CheckedHTTPConnection, req)


class _CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req):
        return self.do_open(_CheckedHTTPSConnection, req, context=ssl.create_default_context())


def opener(allow_private: bool) -> urllib.request.OpenerDirector:
    """urllib as usual (redirects followed, at most 10), each connection checked unless the
    operator allowed private feeds."""
    if allow_private:
        return urllib.request.build_opener()
    return urllib.request.build_opener(_CheckedHTTPHandler, _CheckedHTTPSHandler)


def public_reason(exc: BaseException, timeout: float) -> str:
    """What a reader of the job's log may see: the kind of failure, never a host or address."""
    if isinstance(exc, urllib.error.HTTPError):
        try:
            return f"HTTP {exc.code} {HTTPStatus(exc.code).phrase}"
        except ValueError:
            return f"HTTP {exc.code}"
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, netguard.Refused):
        return "refused: the feed (or a redirect) leads to an address that is not public"
    if isinstance(reason, TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(reason, socket.gaierror):
        return "cannot connect: the host name does not resolve"
    if isinstance(reason, ssl.SSLError):
        return "cannot connect: TLS failed (certificate or protocol)"
    if isinstance(reason, ConnectionRefusedError):
        return "cannot connect: connection refused"
    if isinstance(reason, OSError):
        return "cannot connect: network error"
    return f"cannot read the feed ({type(exc).__name__})"


def _download(url: str, timeout: float, max_bytes: int, result: dict, allow_private: bool = False) -> None:
    try:
        request = urllib.request.Request(
            url,
            headers={
                "User-Agent": USER_AGENT,
                "Accept": "application/rss+xml, application/atom+xml, application/xml, text/xml, */*",
            },
        )
        with opener(allow_private).open(request, timeout=timeout) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise FeedError(f"feed is larger than the {max_bytes // 1024} KiB limit")
            body = bytearray()
            while chunk := response.read(CHUNK):
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise FeedError(f"feed is larger than the {max_bytes // 1024} KiB limit")
            result["body"] = bytes(body)
    except FeedError as exc:
        result["error"] = exc
    except Exception as exc:  # noqa: BLE001 (any failure is this source's failure)
        result["error"] = FeedError(public_reason(exc, timeout), f"{_where(url)}: {type(exc).__name__}: {exc}")


def _where(url: str) -> str:
    """The host and port a feed lives at (no credentials), for the server log."""
    try:
        parts = urlsplit(url)
        return f"{parts.hostname}:{parts.port or ''}"
    except ValueError:
        return "an unparsable URL"


def fetch_feed(
    url: str, timeout: float, max_bytes: int, cancelled: threading.Event, allow_private: bool = False
) -> bytes:
    """The feed's bytes; FeedError when it cannot be had; JobCancelled on a cancel."""
    result: dict = {}
    worker = threading.Thread(target=_download, args=(url, timeout, max_bytes, result, allow_private), daemon=True)
    worker.start()
    deadline = time.monotonic() + timeout
    while worker.is_alive():
        if cancelled.wait(0.05):
            raise JobCancelled()  # the helper thread ends on its own socket timeout
        if time.monotonic() > deadline:
            raise FeedError(f"timed out after {timeout:g} s")
    if "error" in result:
        raise result["error"]
    return result["body"]
