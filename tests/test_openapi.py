"""docs/openapi.yaml is kept true: every real answer below must match what it declares."""

import json
import uuid
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from local.functions import FUNCTIONS
from shared.core.jobs import Job
from tests.support import API_TOKEN

SPEC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"
SPEC = yaml.safe_load(SPEC_PATH.read_text())
REGISTRY = Registry().with_resource("urn:openapi", Resource.from_contents(SPEC, default_specification=DRAFT202012))
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def pointer(*parts: str) -> str:
    return "/" + "/".join(str(part).replace("~", "~0").replace("/", "~1") for part in parts)


def check(path: str, method: str, response) -> None:
    """The status is declared for this path, and a JSON body matches its schema."""
    declared = SPEC["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in declared, f"{method.upper()} {path} answered {status}, which the spec does not declare"
    entry = declared[status]
    where = pointer("paths", path, method, "responses", status)
    if "$ref" in entry:
        where = entry["$ref"].lstrip("#")
        entry = SPEC["components"]["responses"][where.rsplit("/", 1)[-1]]
    if response.mimetype != "application/json":
        assert response.status_code == 204 or response.mimetype in entry.get("content", {})
        return
    schema = {"$ref": "urn:openapi#" + where + pointer("content", "application/json", "schema")}
    Draft202012Validator(schema, registry=REGISTRY).validate(response.get_json())


def post(client, body, headers=AUTH):
    return client.post("/", data=json.dumps(body), content_type="application/json", headers=headers)


def test_the_spec_names_exactly_the_five_functions():
    assert set(SPEC["paths"]) == {f"/{name}" for name in FUNCTIONS}


def test_the_job_schema_lists_exactly_the_fields_a_job_has(session, registry):
    from shared.core import queue  # noqa: PLC0415

    job, _ = queue.enqueue(session, registry, kind="noop", payload={})
    assert isinstance(job, Job)
    assert set(SPEC["components"]["schemas"]["Job"]["required"]) == set(job.to_json())


@pytest.mark.parametrize("name", FUNCTIONS)
def test_each_function_allows_the_methods_the_spec_declares(make_client, name):
    client = make_client(name)
    declared = {method.upper() for method in SPEC["paths"][f"/{name}"]}
    for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
        answered = client.open("/", method=method).status_code
        assert (answered == 405) == (method not in declared), f"{name} {method} answered {answered}"


def test_real_answers_match_the_spec(make_client):
    enqueue, process, status, cancel, sweep = (make_client(name, STATUS_URL="http://x/status") for name in FUNCTIONS)
    job = post(enqueue, {"kind": "steps", "steps": 1, "idempotencyKey": "spec"})
    check("/enqueue", "post", job)
    job_id = job.get_json()["id"]
    check("/enqueue", "post", post(enqueue, {"kind": "steps", "steps": 1, "idempotencyKey": "spec"}))
    check("/enqueue", "post", post(enqueue, {"kind": "steps", "steps": 2, "idempotencyKey": "spec"}))  # 409
    check("/enqueue", "post", post(enqueue, {"kind": "nope"}))
    check("/enqueue", "post", post(enqueue, {}, headers={}))
    check("/enqueue", "post", enqueue.post("/", data="x", content_type="text/plain", headers=AUTH))
    bulk = [{"kind": "noop", "idempotencyKey": "spec-bulk"}, {"kind": "noop", "priority": "x"}, "x"]
    check("/enqueue", "post", post(enqueue, {"jobs": bulk}))  # 200: an answer per job
    check("/enqueue", "post", post(enqueue, {"jobs": bulk[:1]}))  # 200: the key named it already
    check("/enqueue", "post", post(enqueue, {"jobs": []}))  # 400 for the whole request
    check("/enqueue", "get", enqueue.get("/"))  # the dashboard
    check("/enqueue", "get", enqueue.get("/?asset=client.js"))
    check("/enqueue", "get", enqueue.get("/?asset=nope.js"))
    check("/status", "get", status.get("/?asset=client.js"))
    check("/status", "get", status.get("/?view=archive"))
    check("/status", "get", status.get(f"/?id={job_id}"))
    check("/process", "post", process.post("/"))
    check("/process", "post", process.post("/"))  # 204
    check("/process", "post", post(process, {"id": job_id}))  # skipped
    check("/process", "post", post(process, {"id": str(uuid.uuid4())}))  # 404
    check("/status", "get", status.get(f"/?id={job_id}"))
    check("/status", "get", status.get(f"/?id={job_id}&stream=1"))
    check("/status", "get", status.get(f"/?id={uuid.uuid4()}"))
    check("/status", "get", status.get("/?id=nope"))
    check("/status", "get", status.get("/?view=metrics", headers=AUTH))
    check("/status", "get", status.get("/?view=metrics"))  # 401
    check("/cancel", "post", post(cancel, {"generationId": job_id}))  # 409
    queued = post(enqueue, {"kind": "noop"}).get_json()["id"]
    check("/cancel", "post", post(cancel, {"generationId": queued}))
    check("/cancel", "post", post(cancel, {"generationId": queued}))
    check("/cancel", "post", post(cancel, {"generationId": queued}, headers={}))
    check("/sweep", "post", sweep.post("/"))


def test_real_answers_of_the_job_list_rerun_and_process_get_match_the_spec(make_client):
    enqueue, process, status = (
        make_client(name, STATUS_URL="http://x/status") for name in ("enqueue", "process", "status")
    )
    job_id = post(enqueue, {"kind": "noop"}).get_json()["id"]
    check("/process", "get", process.get("/"))
    check("/process", "get", process.get("/"))  # 204
    check("/enqueue", "post", post(enqueue, {"rerunOf": job_id}))  # 409: it completed
    check("/enqueue", "post", post(enqueue, {"rerunOf": str(uuid.uuid4())}))  # 404
    post(enqueue, {"kind": "noop"})
    first = status.get("/?list=1&limit=1", headers=AUTH)
    check("/status", "get", first)
    assert first.get_json()["nextCursor"]
    check("/status", "get", status.get(f"/?list=1&limit=1&cursor={first.get_json()['nextCursor']}", headers=AUTH))
    check(
        "/status", "get", status.get("/?list=1&status=queued,running&kind=noop&createdAfter=2025-01-01", headers=AUTH)
    )
    check("/status", "get", status.get("/?list=1&limit=500", headers=AUTH))  # 400
    check("/status", "get", status.get("/?list=1"))  # 401
    live = status.get("/?list=1&stream=1", headers=AUTH)
    check("/status", "get", live)
    live.close()
