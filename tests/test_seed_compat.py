"""The seed's callers keep working: process answers GET like a POST with no body, and the
seed's integer generationId is refused with a 400 that names the field."""

import json

import pytest


@pytest.fixture
def auth(function_env):
    return {"Authorization": f"Bearer {function_env['API_TOKEN']}"}


def test_process_answers_get_like_a_post_with_no_body(make_client, auth):
    enqueue, process = make_client("enqueue"), make_client("process")
    job = enqueue.post("/", json={"kind": "noop"}, headers=auth).get_json()
    ran = process.get("/")
    assert ran.status_code == 200
    assert ran.get_json()["id"] == job["id"] and ran.get_json()["outcome"] == "completed"
    assert process.get("/").status_code == 204  # nothing left to run


def test_process_get_ignores_a_body_it_was_not_meant_to_have(make_client, auth):
    make_client("enqueue").post("/", json={"kind": "noop"}, headers=auth)
    ran = make_client("process").open("/", method="GET", data="not json", content_type="text/plain")
    assert ran.status_code == 200 and ran.get_json()["outcome"] == "completed"


@pytest.mark.parametrize("generation_id", [42, "42"])
def test_the_seeds_integer_generation_id_is_refused_naming_the_field(make_client, auth, generation_id):
    response = make_client("cancel").post(
        "/", data=json.dumps({"generationId": generation_id}), content_type="application/json", headers=auth
    )
    assert response.status_code == 400
    (detail,) = response.get_json()["error"]["details"]
    assert detail["field"] == "generationId" and "UUID" in detail["message"]


def test_the_status_of_an_integer_id_is_refused_naming_the_field(make_client):
    response = make_client("status").get("/?id=17")
    assert response.status_code == 400
    assert response.get_json()["error"]["details"][0]["field"] == "id"
