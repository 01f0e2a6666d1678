"""Downloading a feed with a deadline, a size limit, and a prompt stop on cancel.

The download runs in a helper thread while the job's thread waits on `cancelled`: a cancel,
or the overall deadline, ends the wait at once even while a slow server is mid-response
(a socket timeout alone would not: a server can drip one byte a second for ever).
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

from shared.core.errors import JobCancelled

USER_AGENT = "jobqueue-newsletter/0.1 (+https://github.com/)"
CHUNK = 64 * 1024


class FeedError(Exception):
    """Why one source could not be read (the newsletter goes on without it)."""


def _download(url: str, timeout: float, max_bytes: int, result: dict) -> None:
    try:
        request = urllib.request.Request(
            url,
            headers={
                "User-Agent": USER_AGENT,
                "Accept": "application/rss+xml, application/atom+xml, application/xml, text/xml, */*",
            },
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
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
        result["error"] = str(exc)
    except urllib.error.HTTPError as exc:
        result["error"] = f"HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        result["error"] = f"cannot connect: {exc.reason}"
    except TimeoutError:
        result["error"] = f"timed out after {timeout:g} s"
    except Exception as exc:  # noqa: BLE001 (any other failure is this source's failure)
        result["error"] = f"{type(exc).__name__}: {exc}"


def fetch_feed(url: str, timeout: float, max_bytes: int, cancelled: threading.Event) -> bytes:
    """The feed's bytes; FeedError when it cannot be had; JobCancelled on a cancel."""
    result: dict = {}
    worker = threading.Thread(target=_download, args=(url, timeout, max_bytes, result), daemon=True)
    worker.start()
    deadline = time.monotonic() + timeout
    while worker.is_alive():
        if cancelled.wait(0.05):
            raise JobCancelled()  # the helper thread ends on its own socket timeout
        if time.monotonic() > deadline:
            raise FeedError(f"timed out after {timeout:g} s")
    if "error" in result:
        raise FeedError(result["error"])
    return result["body"]
