"""The pages' assets and HTML through functions-framework: the JavaScript client served as a
module with a JavaScript content type, and the pages' strict nonce policy."""

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
    assert f'<script type="module" nonce="{nonce}">\nimport {{ createClient }} from "/?asset=client.js";' in html
    assert "'unsafe-inline'" not in response.headers["Content-Security-Policy"]
