"""The newsletter's feed downloads go through the webhook guard: a feed (or its redirect) may
not lead to a private address unless the operator opted out (FEED_ALLOW_PRIVATE), and what
goes wrong reaches the public job log without hosts or addresses."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.error

import pytest

from shared.core import netguard, queue
from shared.core.handlers import HandlerRegistry, read_settings
from shared.core.runner import Runner
from shared.kinds.newsletter.fetch import FeedError, fetch_feed, public_reason
from shared.kinds.newsletter.sources import add_source
from tests import netspy
from tests.test_netguard import Recorder, free_port

RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
# Loopback stands in for "where the feed is"; the guard is told loopback is fine (as the
# operator's opt-out would), so that only the redirect's target is judged.
FEEDS_AND_LOOPBACK = netguard.Policy(schemes=("https", "http"), allow_loopback=True)


class FeedServer(Recorder):
    """Serves RSS at /feed.xml, and a 302 to `location` at /moved.xml."""

    def __init__(self, location: str | None = None):
        super().__init__(302, location=location)
        handler = self.server.RequestHandlerClass

        def do_GET(request):
            self.requests.append({"path": request.path, "host": request.headers["Host"], "body": b""})
            if request.path == "/feed.xml":
                request.send_response(200)
                request.send_header("Content-Length", str(len(RSS)))
                request.end_headers()
                request.wfile.write(RSS)
                return
            request.send_response(302)
            request.send_header("Location", location or "/feed.xml")
            request.send_header("Content-Length", "0")
            request.end_headers()

        handler.do_GET = do_GET


@pytest.fixture
def servers():
    made: list[FeedServer] = []

    def make(location: str | None = None) -> FeedServer:
        made.append(FeedServer(location))
        return made[-1]

    yield make
    for server in made:
        server.close()


def fetch(url: str, allow_private: bool = False) -> bytes:
    return fetch_feed(url, 5, 1024 * 1024, threading.Event(), allow_private)


def test_a_feed_on_a_private_address_is_refused_without_connecting(servers):
    server = servers()
    with netspy.connects() as seen, pytest.raises(FeedError, match="not public"):
        fetch(server.url("/feed.xml"))
    assert seen == [] and server.requests == []


@pytest.mark.parametrize(
    ("target", "mapping"),
    [("http://169.254.169.254/computeMetadata/v1/", {}),
     ("http://metadata.google.internal/computeMetadata/v1/", {"metadata.google.internal": ["169.254.169.254"]}),
     ("http://feeds.example.com/rss", {"feeds.example.com": ["10.0.0.7"]}),
     ("http://[::ffff:192.168.0.1]/rss", {})],
)  # fmt: skip
def test_a_redirect_to_a_private_address_is_not_followed(servers, monkeypatch, target, mapping):
    monkeypatch.setattr(netguard, "FEEDS", FEEDS_AND_LOOPBACK)
    server = servers(location=target)
    with netspy.hosts(mapping, monkeypatch), netspy.connects() as seen:
        with pytest.raises(FeedError, match="not public") as refused:
            fetch(server.url("/moved.xml"))
    assert [request["path"] for request in server.requests] == ["/moved.xml"]
    assert {address[0] for address in seen} == {"127.0.0.1"}  # only the feed server itself
    assert "169.254" not in str(refused.value) and "10.0.0.7" not in str(refused.value)


def test_redirects_are_still_followed_where_they_are_allowed(servers, monkeypatch):
    monkeypatch.setattr(netguard, "FEEDS", FEEDS_AND_LOOPBACK)
    target = servers()
    server = servers(location=target.url("/feed.xml"))
    assert fetch(server.url("/moved.xml")) == RSS  # the guard stops bad redirects, not redirects
    assert fetch(server.url("/moved.xml"), allow_private=True) == RSS


def test_the_job_log_names_no_host_or_address_and_the_server_log_does(session, pool, env, monkeypatch, capsys):
    # FEED_ALLOW_PRIVATE so that the refused port on loopback is tried
    settings = read_settings({**env, "FEED_TIMEOUT_SECONDS": "2", "FEED_ALLOW_PRIVATE": "1"})
    registry = HandlerRegistry.from_settings(settings)
    dead_port = free_port()
    ids = [
        add_source(session, "Unresolvable", "https://feeds.secret-host.example/rss").id,
        add_source(session, "Refused", f"http://127.0.0.1:{dead_port}/rss").id,
    ]
    payload = {"dateRange": {"from": "2025-01-01", "to": "2025-01-07"}, "selectedSources": ids}
    with netspy.hosts({"feeds.secret-host.example": []}, monkeypatch):
        job, _ = queue.enqueue(session, registry, kind="newsletter", payload=payload, max_attempts=1)
        outcome = Runner(pool, registry, settings).run_next()
    assert outcome.outcome == "failed"
    public = json.dumps([event.data for event in queue.list_events(session, job.id)]) + outcome.job.error
    for secret in ("secret-host", "127.0.0.1", str(dead_port)):
        assert secret not in public
    assert "does not resolve" in public and "connection refused" in public
    server_log = capsys.readouterr().out
    assert "secret-host" in server_log and str(dead_port) in server_log  # the operator still sees them


def test_public_reasons_are_categories():
    assert public_reason(urllib.error.URLError(ConnectionRefusedError(111, "x 10.0.0.1")), 1) == (
        "cannot connect: connection refused"
    )
    reason = public_reason(urllib.error.URLError(ssl.SSLCertVerificationError("not valid for 'a.b'")), 1)
    assert "a.b" not in reason
