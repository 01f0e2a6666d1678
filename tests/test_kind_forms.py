"""A kind brings its own dashboard form through its registration: the demo kind's form is
on the dashboard when demo may be enqueued, and what the form posts is a valid demo job."""

from __future__ import annotations

import json
import re

from tests.support import API_TOKEN


def dashboard_config(client) -> dict:
    html = client.get("/").get_data(as_text=True)
    return json.loads(re.search(r"const CONFIG = (.*);\n", html).group(1).replace("<\\/", "</"))


def form_body(form: dict, kind: str) -> dict:
    """The body the page posts for a form left at its defaults."""
    return {"kind": kind, **{field["name"]: field["default"] for field in form["fields"]}}


def test_the_demo_form_is_on_the_dashboard_when_demo_may_be_enqueued(make_client):
    config = dashboard_config(make_client("enqueue", ENQUEUE_KINDS="newsletter,demo"))
    form = config["forms"]["demo"]
    assert [field["name"] for field in form["fields"]] == ["steps", "stepSeconds", "failWith"]
    assert "newsletter" not in config["forms"]  # the default kind's form is the page's own


def test_a_kind_that_may_not_be_enqueued_shows_no_form(make_client):
    assert dashboard_config(make_client("enqueue"))["forms"] == {}


def test_what_the_demo_form_posts_is_a_demo_job_and_a_bad_value_is_named(make_client):
    client = make_client("enqueue", ENQUEUE_KINDS="newsletter,demo")
    form = dashboard_config(client)["forms"]["demo"]
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    made = client.post("/", json=form_body(form, "demo"), headers=auth)
    assert made.status_code == 202 and made.get_json()["kind"] == "demo"
    refused = client.post("/", json={**form_body(form, "demo"), "steps": 1001}, headers=auth)
    assert refused.status_code == 400
    assert [detail["field"] for detail in refused.get_json()["error"]["details"]] == ["steps"]
