"""Hostile input: a fuzzer driven by docs/openapi.yaml (schemathesis, in-process against the
functions' create_app) finds no 5xx and no answer outside the contract.

Left alone, the fuzzer mostly meets the 4xx paths (a random kind, a random job id). A hook
steers part of its cases onto the success paths: kinds that exist, so jobs are created;
ids of real jobs, so streams open and cancels are accepted; the list, live list and metrics
parameters with hostile values (issue 26); and a valid token, the admin's, another
tenant's, a wrong one or none. The inputs that once ended in a 500 are explicit examples.
"""

import base64
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import functions_framework
import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, example, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core import NOT_SET
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from local.functions import FUNCTIONS, NO_RATE_LIMITS, function_source
from shared.core import queue

SPEC = yaml.safe_load((Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml").read_text())
SPEC["servers"] = [{"url": "http://functions.test"}]
schema = schemathesis.openapi.from_dict(SPEC)


OTHER_TENANT_TOKEN = "other-tenant-token-0123456789"
ADMIN_FUZZ_TOKEN = "admin-fuzz-token-0123456789"
# Filled by the `all_functions` fixture before any case is generated: the real jobs that the
# steering hook hands out, and the functions' token.
KNOWN: dict = {"finished": [], "queued": [], "token": None}
FUZZ_ENV = {
    "API_TOKENS": f"other={OTHER_TENANT_TOKEN}",
    "ADMIN_TOKEN": ADMIN_FUZZ_TOKEN,
    # A live list the steering opens with a good filter closes after a second, not twenty.
    "STREAM_MAX_SECONDS": "1",
    # One caller sends every request here; the limits have tests of their own.
    **NO_RATE_LIMITS,
}


def real_jobs(pool, registry) -> None:
    """A finished job (its stream replays and closes: a queued job's would stay open) and
    queued ones due far in the future (process leaves them alone, cancel takes them)."""
    with pool.session() as session:
        job, _ = queue.enqueue(session, registry, kind="noop", payload={})
        claimed = queue.claim_named(session, job.id)
        queue.append_event(session, queue.Lease.of(claimed), "log", {"level": "info", "message": "fuzz"})
        queue.complete(session, queue.Lease.of(claimed), {"ok": True})
        KNOWN["finished"] = [job.id]
        later = datetime(2999, 1, 1, tzinfo=UTC)
        KNOWN["queued"] = [
            queue.enqueue(session, registry, kind="noop", payload={}, run_at=later)[0].id for _ in range(5)
        ]


@schema.hook
def flatmap_case(context, case):
    """Steer a case onto a real kind, a real job id, a token (each list starts with the
    steered choice: hypothesis favours the first; None keeps what the fuzzer made)."""
    path = case.operation.path
    tokens = st.sampled_from(["valid", "other", "wrong", "missing", None])
    if path == "/enqueue" and isinstance(case.body, dict):
        kinds = st.sampled_from(["noop", None, "newsletter"])
        return st.tuples(kinds, st.sampled_from([True, False]), tokens).map(lambda c: steered_enqueue(case, *c))
    if path == "/cancel" and isinstance(case.body, dict):
        ids = st.sampled_from([*KNOWN["queued"], *KNOWN["finished"], None])
        return st.tuples(ids, tokens).map(lambda choice: steered_cancel(case, *choice))
    if path == "/status":
        ids = st.sampled_from([*KNOWN["finished"], None])
        one_job = st.tuples(ids, st.sampled_from([True, False])).map(lambda choice: steered_status(case, *choice))
        listed = st.tuples(
            st.sampled_from(sorted(LISTED_PARAMETERS)),
            st.one_of(st.sampled_from(HOSTILE_QUERY_VALUES), st.text(max_size=40)),
            st.sampled_from(["valid", "admin", "other"]),
        ).map(lambda choice: steered_listed(case, *choice))
        return st.one_of(one_job, listed)
    return st.just(case)


def hostile_cursor(created_at: str) -> str:
    position = json.dumps([created_at, "00000000-0000-4000-8000-000000000000"]).encode()
    return base64.urlsafe_b64encode(position).decode().rstrip("=")


# The list, the live list and the metrics view, each parameter with the classes of value that
# once ended in a 500 (issue 26, item 4): digits int() refuses, times UTC cannot hold (also
# inside a cursor), NUL, a number past every bound.
LISTED_PARAMETERS = {
    "limit": {"list": "1"},
    "kind": {"list": "1"},
    "tenant": {"list": "1"},
    "status": {"list": "1"},
    "createdAfter": {"list": "1"},
    "createdBefore": {"list": "1"},
    "cursor": {"list": "1"},
    "kind ": {"list": "1", "stream": "1"},  # the live list (the space keeps the key apart)
    "createdBefore ": {"list": "1", "stream": "1"},
    "window": {"view": "metrics"},
}
HOSTILE_QUERY_VALUES = [
    "\u00b2",
    "\u0661\u0662",
    "\u0000",
    "a\u0000b",
    "0001-01-01T00:00:00+05:00",
    "9999-12-31T23:59:59-05:00",
    hostile_cursor("9999-12-31T23:59:59-05:00"),
    hostile_cursor("0001-01-01T00:00:00+05:00"),
    "9" * 30,
    "-1",
    "",
]


def steered_listed(case, parameter: str, value: str, token: str):
    """A list, live-list or metrics request with one parameter set to a hostile value."""
    case.query = {**LISTED_PARAMETERS[parameter], parameter.strip(): value}
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() not in ("accept", "last-event-id")}
    return with_token(case, token)


STEER_AUTH = "X-Fuzz-Token"  # which token to send, taken off the case before it is sent


def with_token(case, token: str | None):
    """Mark the case for a token. It is sent as an explicit header, as a client's would be:
    the fuzzer's auth check then probes the same request with no token and a wrong one."""
    if token is not None:
        case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "authorization"}
        case.headers[STEER_AUTH] = token
    return case


def explicit_auth(case) -> dict | None:
    token = (case.headers or {}).pop(STEER_AUTH, None)
    valid = KNOWN["token"]
    bearer = {"valid": valid, "other": OTHER_TENANT_TOKEN, "admin": ADMIN_FUZZ_TOKEN, "wrong": valid[:-1]}.get(token)
    return {"Authorization": f"Bearer {bearer}"} if bearer else None


def steered_enqueue(case, kind: str | None, plain: bool, token: str | None):
    if kind is not None:
        case.body = {**case.body, "kind": kind}
    if plain:  # options the fuzzer made up are usually refused: leave them out
        case.body = {k: v for k, v in case.body.items() if k not in ("runAt", "callbackUrl", "priority")}
    return with_token(case, token)


def steered_cancel(case, job_id: str | None, token: str | None):
    if job_id is not None:
        case.body = {"generationId": job_id}
    return with_token(case, token)


def steered_status(case, job_id: str | None, fresh_stream: bool):
    if job_id is not None:
        case.query = {**(case.query or {}), "id": job_id}
        if fresh_stream:  # a finished job's stream replays and closes (a queued one's would stay open)
            case.query = {k: v for k, v in case.query.items() if k not in ("view", "lastEventId")} | {"stream": "1"}
            case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "last-event-id"}
    return case


@pytest.fixture
def all_functions(monkeypatch, function_env, pool, registry):
    """The five apps behind one WSGI dispatcher: /enqueue is the enqueue function, and so on."""
    import sys  # noqa: PLC0415

    real_jobs(pool, registry)
    KNOWN["token"] = function_env["API_TOKEN"]
    for key, value in {**function_env, **FUZZ_ENV}.items():
        monkeypatch.setenv(key, value)
    apps, modules = {}, []
    for name in FUNCTIONS:
        apps[name] = functions_framework.create_app(target=name, source=str(function_source(name)))
        modules.append(sys.modules["main"])

    def dispatch(environ, start_response):
        # Each function is served at the root of its own URL: /enqueue here is enqueue's "/".
        name = environ.get("PATH_INFO", "").strip("/")
        return apps[name]({**environ, "PATH_INFO": "/", "SCRIPT_NAME": f"/{name}"}, start_response)

    # The schema's own transport too: the auth check sends its probes (no token, a wrong one) through it.
    monkeypatch.setattr(schema, "app", dispatch)
    yield dispatch
    for module in modules:
        module.service.pool.close()
        if hasattr(module, "listener"):
            module.listener.stop()


# What the steered fuzzer must reach on each operation, besides finding no 5xx: without the
# steering, it stays on the 4xx paths (a made-up kind, a made-up id, no token).
MUST_REACH = {
    ("POST", "/enqueue"): {"202", "400", "401"},
    ("GET", "/enqueue"): {"200", "400"},  # the dashboard, and its asset
    ("POST", "/cancel"): {"200 cancelled", "401"},
    ("GET", "/status"): {"200 json", "200 stream", "400", "404"},
}


def reached(response) -> str:
    """A name for the path a request took: its status, and what kind of success."""
    status = str(response.status_code)
    if response.status_code != 200:
        return status
    content_type = (response.headers.get("content-type") or [""])[0]  # lowercase keys, list values
    if content_type.startswith("text/event-stream"):
        return f"{status} stream"
    if not content_type.startswith("application/json"):
        return status  # a page or an asset
    body = response.json()
    return f"{status} {body.get('outcome', 'json')}" if isinstance(body, dict) else status


# Any string is a kind to the spec, but only registered kinds are accepted (a 400 naming the
# kind), so "valid per schema, then refused" is expected. And a parameter that does not
# apply is ignored, not refused (a malformed Last-Event-ID on a plain read, stream=0), so
# "invalid per schema, then accepted" is expected too. Both kinds of case are still held
# to no 5xx and to answers inside the contract.
NOT_CHECKED = [positive_data_acceptance, negative_data_rejection]
OPERATIONS = [(path, method.upper()) for path, methods in SPEC["paths"].items() for method in methods]


# The fuzzer's seed: fixed, so a run that fails fails again (FUZZ_SEED=n tries another), and
# printed, so a failure names it.
FUZZ_SEED = int(os.environ.get("FUZZ_SEED", "20261204"))


def reach_examples(operation) -> list:
    """Explicit cases for each answer in MUST_REACH: the fuzzer's own cases come on top of
    these, so what an operation must reach never depends on what a seed happens to draw."""
    key = (operation.method.upper(), operation.path)
    unknown_job = "00000000-0000-4000-8000-000000000000"

    def case(token=None, **parts):
        return with_token(operation.Case(media_type="application/json", **parts), token)

    return {
        ("POST", "/enqueue"): lambda: [
            case("valid", body={"kind": "noop"}),  # 202
            case("valid", body={"kind": "no-such-kind"}),  # 400
            case("missing", body={"kind": "noop"}),  # 401
        ],
        ("GET", "/enqueue"): lambda: [case(), case(query={"asset": "client.js", "x": "1"})],  # 200, 400
        ("POST", "/cancel"): lambda: [
            case("valid", body={"generationId": KNOWN["queued"][-1]}),  # 200 cancelled
            case("wrong", body={"generationId": KNOWN["queued"][-1]}),  # 401
        ],
        ("GET", "/status"): lambda: [
            case(query={"id": KNOWN["finished"][0]}),  # 200 json
            case(query={"id": KNOWN["finished"][0], "stream": "1"}),  # 200 stream
            case(query={"id": unknown_job}),  # 404
            case("valid", query={"list": "1", "limit": "\u00b2"}),  # 400
            case("admin", query={"list": "1", "stream": "1", "kind": "\u0000"}),  # 400
            case("valid", query={"view": "metrics", "window": "\u0661"}),  # 400
        ],
    }.get(key, list)()


@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_no_5xx_and_no_answer_outside_the_contract(all_functions, path, method):
    operation = schema[path][method]
    operation.app = all_functions
    seen: set[str] = set()
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))
    print(f"fuzzing {method} {path} with seed {FUZZ_SEED} (FUZZ_SEED=n runs another)")

    def fuzz(case):
        case.operation.app = all_functions
        seen.add(reached(case.call_and_validate(headers=explicit_auth(case), excluded_checks=NOT_CHECKED)))

    for explicit in reach_examples(operation):
        fuzz = example(case=explicit)(fuzz)
    fuzz = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)(fuzz)
    seed(FUZZ_SEED)(given(case=cases)(fuzz))()
    assert MUST_REACH.get((method.upper(), path), set()) <= seen, f"{method} {path} reached only {sorted(seen)}"


# The inputs that once ended in a 500 (issue 15, item 6), as explicit examples: the same
# checks as the fuzzer's, and each must be a 400.
EXPLICIT = {
    "runAt before the year 1 in UTC": (
        "/enqueue",
        {"body": {"kind": "noop", "runAt": "0001-01-01T00:00:00+05:00"}},
        "runAt",
    ),
    "runAt after the year 9999 in UTC": (
        "/enqueue",
        {"body": {"kind": "noop", "runAt": "9999-12-31T23:59:59-05:00"}},
        "runAt",
    ),
    "NUL in the payload": ("/enqueue", {"body": {"kind": "noop", "note": "\u0000"}}, "note"),
    "lone surrogate in the payload": ("/enqueue", {"body": {"kind": "noop", "note": "\ud800"}}, "note"),
    # Raw bytes: the fuzzer's own JSON encoder refuses NaN, as a strict client would.
    "NaN in the payload": ("/enqueue", {"body": b'{"kind": "noop", "ratio": NaN}'}, "ratio"),
    "Infinity in the payload": ("/enqueue", {"body": b'{"kind": "noop", "ratio": -Infinity}'}, "ratio"),
    "NUL in the idempotency key": (
        "/enqueue",
        {"body": {"kind": "noop", "idempotencyKey": "\u0000"}},
        "idempotencyKey",
    ),
    "lone surrogate in the idempotency key": (
        "/enqueue",
        {"body": {"kind": "noop", "idempotencyKey": "\ud800"}},
        "idempotencyKey",
    ),
    "a Unicode digit as lastEventId": ("/status", {"query": {"stream": "1", "lastEventId": "\u00b2"}}, "lastEventId"),
    "Last-Event-ID past the bigint": (
        "/status",
        {"query": {"stream": "1"}, "headers": {"Last-Event-ID": str(2**63)}},
        "Last-Event-ID",
    ),
    # Issue 26, item 4: the list, the live list and the metrics view.
    "a Unicode digit as limit": ("/status", {"query": {"list": "1", "limit": "\u00b2"}}, "limit"),
    "a Unicode digit as window": ("/status", {"query": {"view": "metrics", "window": "\u00b2"}}, "window"),
    "createdAfter before the year 1 in UTC": (
        "/status",
        {"query": {"list": "1", "createdAfter": "0001-01-01T00:00:00+05:00"}},
        "createdAfter",
    ),
    "createdBefore after the year 9999 in UTC": (
        "/status",
        {"query": {"list": "1", "createdBefore": "9999-12-31T23:59:59-05:00"}},
        "createdBefore",
    ),
    "a cursor after the year 9999 in UTC": (
        "/status",
        {"query": {"list": "1", "cursor": hostile_cursor("9999-12-31T23:59:59-05:00")}},
        "cursor",
    ),
    "NUL in kind": ("/status", {"query": {"list": "1", "kind": "\u0000"}}, "kind"),
    "NUL in kind, live list": ("/status", {"query": {"list": "1", "stream": "1", "kind": "\u0000"}}, "kind"),
    "NUL in the admin's tenant": (
        "/status",
        {"query": {"list": "1", "tenant": "\u0000"}, "headers": {"Authorization": f"Bearer {ADMIN_FUZZ_TOKEN}"}},
        "tenant",
    ),
}


@pytest.mark.parametrize(("path", "parts", "field"), EXPLICIT.values(), ids=EXPLICIT.keys())
def test_the_inputs_that_once_ended_in_a_500_are_each_a_400_naming_the_field(all_functions, path, parts, field):
    operation = schema[path]["POST" if path == "/enqueue" else "GET"]
    operation.app = all_functions
    headers = {"Authorization": f"Bearer {KNOWN['token']}", **parts.get("headers", {})}
    query = {**parts.get("query", {}), "id": KNOWN["queued"][0]} if "query" in parts else None
    case = operation.Case(body=parts.get("body", NOT_SET), query=query, headers=headers, media_type="application/json")
    response = case.call_and_validate(excluded_checks=NOT_CHECKED)
    assert response.status_code == 400, response.text
    assert field in [detail["field"] for detail in response.json()["error"]["details"]], response.text
