"""A kind brings its own dashboard form through its registration: each accepted kind's form
is on the dashboard (the default kind's first), declared by the kind alone, and what a form
posts at its defaults is a valid job of that kind."""

from __future__ import annotations

import json
import re

from tests.support import API_TOKEN

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def dashboard_config(client) -> dict:
    html = client.get("/").get_data(as_text=True)
    return json.loads(re.search(r"const CONFIG = (.*);\n", html).group(1).replace("<\\/", "</"))


def forms_by_kind(config: dict) -> dict[str, dict]:
    return {entry["kind"]: entry for entry in config["forms"]}


def field_values(fields: list[dict]) -> dict:
    """What the page posts for fields left at their defaults (a group's as one object)."""
    return {
        field["name"]: field_values(field["fields"]) if field["type"] == "group" else field["default"]
        for field in fields
    }


def form_body(entry: dict) -> dict:
    """The body the page posts for a form left at its defaults: the default kind's names no kind."""
    kind = {} if entry["isDefault"] else {"kind": entry["kind"]}
    return {**kind, **field_values(entry["form"]["fields"])}


def test_the_accepted_kinds_forms_are_on_the_dashboard_the_default_kinds_first(make_client):
    config = dashboard_config(make_client("enqueue", ENQUEUE_KINDS="demo,newsletter"))
    assert [(entry["kind"], entry["isDefault"]) for entry in config["forms"]] == [
        ("newsletter", True),
        ("demo", False),
    ]
    demo = forms_by_kind(config)["demo"]["form"]
    assert [field["name"] for field in demo["fields"]] == ["steps", "stepSeconds", "failWith", "note"]


def test_a_kind_that_may_not_be_enqueued_shows_no_form(make_client):
    assert list(forms_by_kind(dashboard_config(make_client("enqueue")))) == ["newsletter"]


def test_what_the_demo_form_posts_is_a_demo_job_and_a_bad_value_is_named(make_client):
    client = make_client("enqueue", ENQUEUE_KINDS="newsletter,demo")
    entry = forms_by_kind(dashboard_config(client))["demo"]
    made = client.post("/", json=form_body(entry), headers=AUTH)
    assert made.status_code == 202 and made.get_json()["kind"] == "demo"
    refused = client.post("/", json={**form_body(entry), "steps": 1001, "note": "x" * 201}, headers=AUTH)
    assert refused.status_code == 400
    assert [detail["field"] for detail in refused.get_json()["error"]["details"]] == ["steps", "note"]


def test_what_the_newsletter_form_posts_at_its_defaults_is_a_newsletter_job(make_client, session):
    """The seed's form, now declared by the newsletter kind: the last seven UTC days, every
    active source, Markdown; its plain words name the fields the kind's checks name."""
    from shared.kinds.newsletter.sources import add_source  # noqa: PLC0415

    source = add_source(session, "Engineering", "https://example.com/feed.xml")
    client = make_client("enqueue")
    entry = forms_by_kind(dashboard_config(client))["newsletter"]
    body = form_body(entry)
    assert body["selectedSources"] == [source.id] and body["outputFormat"] == "markdown"
    made = client.post("/", json=body, headers=AUTH)
    assert made.status_code == 202 and made.get_json()["kind"] == "newsletter"
    refused = client.post("/", json={**body, "dateRange": {"from": "2025-01-09", "to": "2025-01-02"}}, headers=AUTH)
    fields = [detail["field"] for detail in refused.get_json()["error"]["details"]]
    assert fields == ["dateRange"] and "dateRange" in {words[0] for words in entry["form"]["plainWords"]}
