"""The pages' assets and HTML through functions-framework: the JavaScript client served as a
module with a JavaScript content type, and the pages' strict nonce policy."""

import json
import re

from shared.core import queue
from shared.web.pages import CLIENT_JS


def test_status_serves_the_client_module_that_clients_js_publishes(make_client):
    status = make_client("status")
    response = status.get("/?asset=client.js")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.get_data(as_text=True) == CLIENT_JS.read_text()
    assert "export function createClient" in response.get_data(as_text=True)


def test_an_unknown_asset_is_a_clear_404(make_client):
    response = make_client("status").get("/?asset=../../main.py")
    assert response.status_code == 404
    assert response.get_json()["error"]["message"].startswith("No asset named '../../main.py'")


def test_the_status_page_imports_the_client_under_its_nonce(make_client, session, registry):
    job, _ = queue.enqueue(session, registry, kind="noop", payload={})
    response = make_client("status").get(f"/?id={job.id}", headers={"Accept": "text/html"})
    html = response.get_data(as_text=True)
    nonce = re.search(r"script-src 'nonce-([^']+)'", response.headers["Content-Security-Policy"]).group(1)
    assert f'<script type="module" nonce="{nonce}">' in html
    assert 'import(new URL("?asset=client.js", location.href))' in html
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]


def test_get_on_enqueue_is_the_dashboard_with_the_active_sources(make_client, session):
    from shared.kinds.newsletter.sources import add_source, disable_source  # noqa: PLC0415

    add_source(session, "Engineering <blog>", "https://example.com/feed.xml")
    disable_source(session, add_source(session, "Retired", "https://example.com/old.xml").id)
    response = make_client("enqueue", STATUS_URL="https://status.example/s").get("/")
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    config = json.loads(re.search(r"const CONFIG = (.*);\n", html).group(1).replace("<\\/", "</"))
    (newsletter,) = [form["form"] for form in config["forms"] if form["kind"] == "newsletter"]
    (sources,) = [field for field in newsletter["fields"] if field["name"] == "selectedSources"]
    assert [option["label"] for option in sources["options"]] == ["Engineering <blog>"]
    assert config["archiveUrl"] == "https://status.example/s?view=archive"
    assert config["tokenRequired"] is True
    assert "Engineering <blog>" not in html.split("const CONFIG")[0], "names go in as data, never as markup"
    policy = response.headers["Content-Security-Policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", policy).group(1)
    assert f'<script type="module" nonce="{nonce}">' in html
    assert 'import(new URL("?asset=client.js", location.href))' in html
    assert "connect-src 'self';" in policy and "form-action 'none'" in policy


def test_enqueue_serves_the_client_module_too(make_client):
    response = make_client("enqueue").get("/?asset=client.js")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"


def test_the_archive_page_connects_only_to_itself_and_the_cancel_and_enqueue_functions(make_client):
    status = make_client("status", CANCEL_URL="https://cancel.example/c", ENQUEUE_URL="https://enqueue.example/e")
    response = status.get("/?view=archive")
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "connect-src 'self' https://cancel.example https://enqueue.example;" in policy
    assert "Show my jobs" in response.get_data(as_text=True)


def test_the_archive_gets_each_kinds_card_with_the_names_it_shows(make_client, session):
    """The cards are the kinds' own declarations (issue 24); the newsletter's names every
    source, a retired one too (an older newsletter may name it)."""
    from shared.kinds.newsletter.sources import add_source, disable_source  # noqa: PLC0415

    retired = add_source(session, "Retired </script>", "https://example.com/old.xml")
    disable_source(session, retired.id)
    html = make_client("status").get("/?view=archive").get_data(as_text=True)
    config = json.loads(re.search(r"const CONFIG = (.*);\n", html).group(1))
    assert config["defaultKind"] == "newsletter"
    newsletter, demo = config["cards"]["newsletter"], config["cards"]["demo"]
    assert newsletter["data"]["sources"][str(retired.id)] == "Retired </script>"
    assert newsletter["plural"] == "Newsletters" and newsletter["document"] == {"title": "result.title"}
    assert demo["label"] == "Demo" and "document" not in demo
    assert "Retired" not in html.split("const CONFIG")[0], "names go in as data, never as markup"


def test_an_asset_or_archive_request_with_other_parameters_is_refused_naming_them(make_client):
    status = make_client("status")
    response = status.get("/?asset=client.js&id=x&limit=1000")
    assert response.status_code == 400
    assert [d["field"] for d in response.get_json()["error"]["details"]] == ["id", "limit"]
    response = status.get("/?view=archive", headers={"Last-Event-ID": "abc"})
    assert response.status_code == 400
    assert response.get_json()["error"]["details"] == [{"field": "Last-Event-ID", "message": "not allowed with view"}]


# Issue 26, items 1 and 11: werkzeug collapses "//", but a decoded backslash or tab still
# reaches the browser's URL parser, which reads "/\host:port/x" and "/\t/host:port/x" as
# "//host:port/x": another origin. Whatever the path, no page may name it.
CRAFTED_PATHS = ["/%5Cattacker.example:4444/x", "/%09/attacker.example:4444/x", "/%5C%5Cattacker.example/x"]


def page_urls(make_client, session, registry):
    job, _ = queue.enqueue(session, registry, kind="noop", payload={})
    status = make_client("status", CANCEL_URL="https://cancel.example/c", ENQUEUE_URL="https://enqueue.example/e")
    enqueue = make_client("enqueue", STATUS_URL="https://status.example/s")
    return [
        (status, "?view=archive", {}),
        (status, f"?id={job.id}", {"Accept": "text/html"}),
        (status, f"?id={job.id}&view=page", {}),
        (enqueue, "", {}),
    ]


def test_no_page_names_its_request_path_whatever_the_path(make_client, session, registry):
    for client, query, headers in page_urls(make_client, session, registry):
        for path in CRAFTED_PATHS:
            response = client.get(path + query, headers=headers)
            assert response.status_code == 200 and response.mimetype == "text/html", (path, query)
            html = response.get_data(as_text=True)
            assert "attacker" not in html, f"{path}{query} put its path into the page"
            assert "attacker" not in response.headers["Content-Security-Policy"]


def completed_with(session, registry, result: dict):
    job, _ = queue.enqueue(session, registry, kind="noop", payload={})
    claimed = queue.claim_named(session, job.id)
    queue.complete(session, queue.Lease.of(claimed), result)
    return job


def test_a_result_document_loads_no_remote_image_and_shows_no_bidi_controls(make_client, session, registry):
    # Issue 26, items 12 and 14: an HTML result may name an image anywhere (a tracking pixel),
    # and a feed's title may carry U+202E, which reverses the document's own words beside it.
    document = '<h1>Invoice \u202egnp.exe\u202c ok</h1><img src="https://tracker.example/p.png">'
    job = completed_with(session, registry, {"document": document, "format": "html"})
    status = make_client("status")
    response = status.get(f"/?id={job.id}&view=document", headers={"Sec-Fetch-Dest": "iframe"})
    assert response.status_code == 200 and response.mimetype == "text/html"
    policy = response.headers["Content-Security-Policy"]
    assert "img-src data:;" in policy and "https:" not in policy
    assert response.get_data(as_text=True) == '<h1>Invoice gnp.exe ok</h1><img src="https://tracker.example/p.png">'
    own_tab = status.get(f"/?id={job.id}&view=document")  # the result's page: the same rules
    assert "img-src data:;" in own_tab.headers["Content-Security-Policy"]
    assert "\u202e" not in own_tab.get_data(as_text=True)


def test_the_pages_helpers_are_served_as_a_module(make_client):
    response = make_client("status").get("/?asset=pages.js")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert "export function plain" in response.get_data(as_text=True)


def test_the_json_status_tells_a_poller_the_message_and_preview_the_stream_shows(make_client, session, registry):
    # Issue 23: while the page polled, its progress bar moved but its message and preview froze.
    job, _ = queue.enqueue(session, registry, kind="noop", payload={})
    lease = queue.Lease.of(queue.claim_named(session, job.id))
    status = make_client("status")
    before = status.get(f"/?id={job.id}").get_json()
    assert (before["message"], before["preview"], before["previewFormat"]) == (None, None, None)
    queue.record_progress(session, lease, 20, "Processing", "1 of 5 sources read")
    queue.append_event(session, lease, "preview", {"format": "markdown", "content": "# Draft one"})
    queue.record_progress(session, lease, 40, None, "2 of 5 sources read")
    queue.append_event(session, lease, "preview", {"format": "markdown", "content": "# Draft two"})
    last = queue.record_progress(session, lease, 53, None, None)  # no message: the last one stands
    body = status.get(f"/?id={job.id}").get_json()
    assert body["message"] == "2 of 5 sources read"
    assert (body["preview"], body["previewFormat"]) == ("# Draft two", "markdown")
    assert body["lastEventSeq"] == last and body["progress"] == 53


def test_a_markdown_result_is_a_page_with_a_way_back_and_its_raw_text_to_download(make_client, session, registry):
    # Issue 23: a Markdown result was shown as raw text, with no way back.
    markdown = "# Weekly\n\n- [One](https://example.com/1)\n\n<script>alert(1)</script>\n"
    job = completed_with(session, registry, {"document": markdown, "format": "markdown", "title": "Weekly"})
    status = make_client("status", ENQUEUE_URL="https://enqueue.example/e")
    page = status.get(f"/?id={job.id}&view=document")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "<h1>Weekly</h1>" in html and '<a href="https://example.com/1">One</a>' in html
    assert "<script>" not in html, "raw HTML in Markdown stays text"
    for link in (
        "https://enqueue.example/e",
        "?view=archive",
        f"?id={job.id}&amp;stay=1",
        f"?id={job.id}&amp;view=download",
    ):
        assert f'href="{link}"' in html
    assert page.headers["Content-Security-Policy"].startswith("sandbox allow-downloads;")
    assert "script-src" not in page.headers["Content-Security-Policy"]
    framed = status.get(f"/?id={job.id}&view=document", headers={"Sec-Fetch-Dest": "iframe"})
    assert framed.mimetype == "text/plain" and framed.get_data(as_text=True) == markdown
    raw = status.get(f"/?id={job.id}&view=download")
    assert raw.get_data(as_text=True) == markdown and raw.mimetype == "text/markdown"
    assert raw.headers["Content-Disposition"] == f'attachment; filename="noop-{job.id}.md"'


def test_an_html_result_gets_the_links_at_the_top_of_its_body(make_client, session, registry):
    document = "<!doctype html><html><head><title>N</title></head><body class='x'><h1>N</h1></body></html>"
    job = completed_with(session, registry, {"document": document, "format": "html"})
    html = make_client("status").get(f"/?id={job.id}&view=document").get_data(as_text=True)
    assert html.startswith("<!doctype html><html><head><title>N</title></head><body class='x'>\n<nav")
    assert html.endswith("</nav>\n<h1>N</h1></body></html>") and "Download the HTML" in html


def test_the_json_status_puts_a_previews_appends_back_together(make_client, session, registry):
    # The writer stores a whole text, then only what is new (shared/core/preview.py): a poller
    # must see the same text as a follower, not the newest fragment nor nothing.
    job, _ = queue.enqueue(session, registry, kind="noop", payload={})
    lease = queue.Lease.of(queue.claim_named(session, job.id))
    queue.append_event(session, lease, "preview", {"format": "markdown", "content": "# Old draft"})
    queue.append_event(session, lease, "preview", {"format": "markdown", "content": "# News"})
    queue.append_event(session, lease, "preview", {"format": "markdown", "append": "\n\n- one"})
    queue.record_progress(session, lease, 60, None, "Writing")
    queue.append_event(session, lease, "preview", {"format": "markdown", "append": "\n- two"})
    body = make_client("status").get(f"/?id={job.id}").get_json()
    assert (body["preview"], body["previewFormat"]) == ("# News\n\n- one\n- two", "markdown")
    assert body["message"] == "Writing"
