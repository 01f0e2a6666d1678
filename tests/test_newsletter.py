"""The newsletter job on real feeds served over HTTP by a server inside the tests."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.core import queue
from shared.core.errors import ValidationError
from shared.core.handlers import HandlerRegistry, read_settings
from shared.core.runner import Runner
from shared.kinds.newsletter.cli import main as sources_cli
from shared.kinds.newsletter.sources import add_source, disable_source


def rss(*items: tuple[str, str, str]) -> bytes:
    body = "".join(
        f"<item><title>{title}</title><link>{link}</link><pubDate>{date}</pubDate>"
        f"<description>&lt;p&gt;About &lt;b&gt;{title}&lt;/b&gt;&lt;/p&gt;</description></item>"
        for title, link, date in items
    )
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>{body}</channel></rss>'.encode()


FEEDS = {
    "/edges.xml": rss(
        ("Before the range", "https://e.example/0", "Tue, 31 Dec 2024 23:59:59 +0000"),
        ("First instant", "https://e.example/1", "Wed, 01 Jan 2025 00:00:00 +0000"),
        ("Last instant", "https://e.example/2", "Tue, 07 Jan 2025 23:59:59 +0000"),
        ("After the range", "https://e.example/3", "Wed, 08 Jan 2025 00:00:00 +0000"),
        ("Late in Paris, still the 7th in UTC", "https://e.example/4", "Wed, 08 Jan 2025 00:30:00 +0100"),
        ("Early in New York, already the 8th in UTC", "https://e.example/5", "Tue, 07 Jan 2025 20:00:00 -0500"),
    ),
    "/script.xml": rss(
        ("&lt;script&gt;alert(1)&lt;/script&gt; Big news", "javascript:alert(2)", "Thu, 02 Jan 2025 10:00:00 +0000")
    ),
    "/atom.xml": (
        b'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>a</title>'
        b'<entry><title>Atom entry</title><link href="https://a.example/1"/><id>1</id>'
        b"<updated>2025-01-03T08:15:00+01:00</updated><summary>Plain summary</summary></entry></feed>"
    ),
    "/broken.xml": b"<rss><channel><item><title>unclosed",
}


class FeedHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/slow.xml":
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.end_headers()
            self.wfile.write(b'<?xml version="1.0"?><rss version="2.0"><channel>')
            self.wfile.flush()
            time.sleep(30)  # a download that never finishes in time
            return
        if self.path == "/huge.xml":
            self.send_response(200)
            self.end_headers()
            chunk = b"<!-- padding -->" * 4096
            try:
                for _ in range(200):  # about 13 MB, no Content-Length
                    self.wfile.write(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        body = FEEDS.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/rss+xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def feeds():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FeedHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def builtin(settings):
    return HandlerRegistry.from_settings(settings)


@pytest.fixture
def settings(env):
    """Quick feed limits, through the settings like a deployment's: a stuck download gives up
    after 1.5 s, and a feed over 1 MiB is refused. These feeds are served on loopback."""
    return read_settings(
        {**env, "FEED_TIMEOUT_SECONDS": "1.5", "FEED_MAX_BYTES": str(1024 * 1024), "FEED_ALLOW_PRIVATE": "1"}
    )


def source(session, feeds, path, name=None):
    return add_source(session, name or path.strip("/"), feeds + path).id


def request(ids, output="markdown", start="2025-01-01", end="2025-01-07"):
    return {"dateRange": {"from": start, "to": end}, "selectedSources": ids, "outputFormat": output}


def run(session, pool, builtin, settings, payload):
    job, _ = queue.enqueue(session, builtin, kind="newsletter", payload=payload)
    outcome = Runner(pool, builtin, settings).run_next()
    return outcome, queue.list_events(session, job.id)


@pytest.mark.parametrize(
    ("payload", "field", "words"),
    [
        (request([1], start="2025-02-30"), "dateRange.from", "not a real date"),
        (request([1], end="soon"), "dateRange.to", "not a real date"),
        (request([1], start="2025-01-08"), "dateRange", "from must not be after to"),
        (request([1], start="2020-01-01"), "dateRange", "spans more than"),
        (request([]), "selectedSources", "non-empty"),
        (request(["1"]), "selectedSources", "positive whole number"),
        (request([1], output="pdf"), "outputFormat", "markdown, html"),
        (request([999]), "selectedSources", "no source with id 999"),
        ({"selectedSources": [1]}, "dateRange", "must be an object"),
    ],
)
def test_enqueue_refuses_a_bad_newsletter_request_naming_the_problem(session, builtin, feeds, payload, field, words):
    source(session, feeds, "/atom.xml")
    with pytest.raises(ValidationError) as raised:
        queue.enqueue(session, builtin, kind="newsletter", payload=payload)
    assert any(d["field"] == field and words in d["message"] for d in raised.value.details), raised.value.details
    assert session.run_sql("SELECT count(*) FROM jobs")[0][0] == 0


def test_a_disabled_source_is_refused_at_enqueue(session, builtin, feeds):
    ident = source(session, feeds, "/atom.xml")
    disable_source(session, ident)
    with pytest.raises(ValidationError, match="disabled"):
        queue.enqueue(session, builtin, kind="newsletter", payload=request([ident]))


def test_the_date_range_includes_both_whole_days_in_utc(session, pool, builtin, settings, feeds):
    ident = source(session, feeds, "/edges.xml")
    outcome, _ = run(session, pool, builtin, settings, request([ident]))
    assert outcome.outcome == "completed"
    document = outcome.job.result["document"]
    for kept in ("First instant", "Last instant", "Late in Paris, still the 7th in UTC"):
        assert kept in document
    for dropped in ("Before the range", "After the range", "Early in New York"):
        assert dropped not in document
    assert outcome.job.result["countsBySource"] == {str(ident): 3}
    assert document.startswith("# Newsletter for January 1–7, 2025")
    assert "About Last instant" in document and "<b>" not in document  # summaries are plain text


def test_html_output_escapes_what_feeds_carry(session, pool, builtin, settings, feeds):
    ident = source(session, feeds, "/script.xml", name="Evil <script>alert(3)</script> feed")
    outcome, _ = run(session, pool, builtin, settings, request([ident], output="html"))
    document = outcome.job.result["document"]
    assert outcome.job.result["format"] == "html" and document.startswith("<!doctype html>")
    assert "<script" not in document.lower()
    assert "Evil &lt;script&gt;alert(3)&lt;/script&gt; feed" in document  # escaped text, not markup
    assert ">Big news</a>" in document and "alert(1)" not in document  # script dropped from the title
    assert 'href="#"' in document and "javascript:" not in document


def test_markdown_output_escapes_markup_too(session, pool, builtin, settings, feeds):
    ident = source(session, feeds, "/script.xml", name="Evil <script>alert(3)</script> feed")
    document = run(session, pool, builtin, settings, request([ident]))[0].job.result["document"]
    assert "<script>" not in document and r"## Evil \<script\>alert\(3\)\</script\> feed" in document
    assert "[Big news](#)" in document and "javascript:" not in document


def test_progress_steps_logs_and_previews_arrive_in_order(session, pool, builtin, settings, feeds):
    ids = [source(session, feeds, "/edges.xml"), source(session, feeds, "/atom.xml")]
    outcome, events = run(session, pool, builtin, settings, request(ids))
    assert outcome.outcome == "completed"
    progress = [e.data["progress"] for e in events if e.kind == "progress"]
    assert progress == sorted(progress) and progress[-1] == 90
    steps = [
        e.data.get("currentStep") for e in events if e.kind in ("status", "progress") and e.data.get("currentStep")
    ]
    order = list(dict.fromkeys(steps))
    assert order == ["Queued", "Processing", "Formatting", "Complete"]
    logs = [e.data["message"] for e in events if e.kind == "log"]
    assert logs == [
        "Fetching edges.xml",
        "edges.xml: 3 entries in range",
        "Fetching atom.xml",
        "atom.xml: 1 entry in range",
    ]
    previews = [e.data["content"] for e in events if e.kind == "preview"]
    assert len(previews) == 2 and "Atom entry" not in previews[0] and "Atom entry" in previews[1]


def test_failing_sources_are_skipped_and_named(session, pool, builtin, settings, feeds):
    good = source(session, feeds, "/atom.xml")
    bad = [source(session, feeds, path) for path in ("/missing.xml", "/broken.xml", "/huge.xml", "/slow.xml")]
    outcome, events = run(session, pool, builtin, settings, request([good, *bad]))
    assert outcome.outcome == "completed"
    failed = {f["name"]: f["error"] for f in outcome.job.result["failedSources"]}
    assert failed["missing.xml"] == "HTTP 404 Not Found"
    assert "not a readable RSS or Atom feed" in failed["broken.xml"]
    assert "larger than the 1024 KiB limit" in failed["huge.xml"]
    assert "timed out" in failed["slow.xml"]
    assert "Atom entry" in outcome.job.result["document"]
    assert "Not included" in outcome.job.result["document"]
    warnings = [e.data["message"] for e in events if e.kind == "log" and e.data["level"] == "warning"]
    assert len(warnings) == 4


def test_when_every_source_fails_the_job_fails_clearly(session, pool, builtin, settings, feeds):
    ids = [source(session, feeds, "/missing.xml"), source(session, feeds, "/broken.xml")]
    queue.enqueue(session, builtin, kind="newsletter", payload=request(ids), max_attempts=1)
    outcome = Runner(pool, builtin, settings).run_next()
    assert outcome.outcome == "failed"
    assert "Every source failed" in outcome.job.error and "missing.xml: HTTP 404" in outcome.job.error


def test_a_cancel_stops_it_in_the_middle_of_a_slow_download(session, pool, builtin, env, feeds):
    # Only the cancel can stop it in time; the feed is served on loopback.
    settings = read_settings({**env, "FEED_TIMEOUT_SECONDS": "30", "FEED_ALLOW_PRIVATE": "1"})
    ident = source(session, feeds, "/slow.xml")
    job, _ = queue.enqueue(session, builtin, kind="newsletter", payload=request([ident]))
    outcomes = []
    worker = threading.Thread(target=lambda: outcomes.append(Runner(pool, builtin, settings).run_next()))
    worker.start()
    deadline = time.monotonic() + 10
    while not any(e.kind == "log" for e in queue.list_events(session, job.id)):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)  # well into the download
    queue.cancel(session, job.id)
    worker.join(20)  # the download alone would take 30 s (how fast is make bench's question)
    assert not worker.is_alive()
    assert outcomes[0].outcome == "cancelled"
    assert queue.get_job(session, job.id).job_status == "cancelled"


def test_sources_are_managed_from_the_command_line(database_url, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert sources_cli(["add", "Tech", "https://tech.example/feed.xml"]) == 0
    assert sources_cli(["add", "Bad", "ftp://nope"]) == 1
    assert sources_cli(["list"]) == 0
    listing = capsys.readouterr().out
    assert "Tech" in listing and "https://tech.example/feed.xml" in listing and "Bad" not in listing
    ident = listing.split("add: ")[1].split()[0]
    assert sources_cli(["disable", ident]) == 0
    sources_cli(["list"])
    assert "disabled" in capsys.readouterr().out
    assert sources_cli(["remove", ident]) == 0
    assert sources_cli(["remove", ident]) == 1
