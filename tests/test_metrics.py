"""The queue's figures on a known set of jobs: the gauges sweep logs each tick, the recent
figures by kind, the status function's metrics view (token required, scoped by tenant) and
`python -m client stats`."""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from shared.core import metrics, queue

TOKEN = "metrics-operator-token"
ACME_TOKEN = "metrics-acme-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def ages_ago(session, job_id: str, **columns: float) -> None:
    """Set timestamp columns of a job to `seconds` before the database's now()."""
    for column, seconds in columns.items():
        assert column in ("run_at", "processed_at", "finished_at", "last_heartbeat", "updated_at")
        session.run_sql(
            f"UPDATE jobs SET {column} = now() - make_interval(secs => CAST(:s AS double precision)) WHERE id = :id",
            s=seconds,
            id=job_id,
        )


def known_queue(session, registry) -> dict[str, str]:
    """2 running (heartbeats 45 s and 5 s old), 3 queued and due (waiting 60, 30 and 10 s),
    1 scheduled an hour ahead, 1 completed; one more queued job belongs to tenant acme."""
    ids = {}
    for name in ("run-a", "run-b"):
        job, _ = queue.enqueue(session, registry, kind="noop", payload={}, priority=10)
        ids[name] = job.id
    assert {queue.claim_next(session).id, queue.claim_next(session).id} == {ids["run-a"], ids["run-b"]}
    ages_ago(session, ids["run-a"], last_heartbeat=45)
    ages_ago(session, ids["run-b"], last_heartbeat=5)
    for name, waited in (("q60", 60), ("q30", 30), ("q10", 10)):
        job, _ = queue.enqueue(session, registry, kind="noop", payload={})
        ids[name] = job.id
        ages_ago(session, job.id, run_at=waited)
    later, _ = queue.enqueue(session, registry, kind="noop", payload={}, run_at="2999-01-01T00:00:00Z")
    ids["scheduled"] = later.id
    acme, _ = queue.enqueue(session, registry, kind="count", payload={}, tenant="acme")
    ids["acme"] = acme.id
    ages_ago(session, acme.id, run_at=300)
    return ids


def test_gauges_on_a_known_set_of_jobs(session, registry):
    known_queue(session, registry)
    whole = metrics.read_gauges(session)
    assert (whole.queued, whole.scheduled, whole.running) == (4, 1, 2)
    assert 300 <= whole.oldest_queued_age_seconds < 310  # acme's job waited longest
    assert 45 <= whole.oldest_heartbeat_age_seconds < 55
    default = metrics.read_gauges(session, "default")
    assert (default.queued, default.scheduled, default.running) == (3, 1, 2)
    assert 60 <= default.oldest_queued_age_seconds < 70
    acme = metrics.read_gauges(session, "acme")
    assert (acme.queued, acme.running, acme.oldest_heartbeat_age_seconds) == (1, 0, 0.0)


def test_an_empty_queue_has_zero_ages(session):
    gauges = metrics.read_gauges(session)
    assert gauges.to_json() == {
        "queued": 0,
        "scheduled": 0,
        "running": 0,
        "oldestQueuedAgeSeconds": 0.0,
        "oldestHeartbeatAgeSeconds": 0.0,
    }


def finished(session, registry, kind: str, status: str, wait: float | None, run: float | None, ago: float = 1) -> str:
    """A job that ended `ago` seconds ago, having waited `wait` s and run `run` s (in one
    transaction, so that every now() is the same instant and the figures come out exact)."""
    with session.transaction():
        job, _ = queue.enqueue(session, registry, kind=kind, payload={})
        ages_ago(session, job.id, finished_at=ago)
        session.run_sql("UPDATE jobs SET job_status = :status WHERE id = :id", status=status, id=job.id)
        if run is not None:
            ages_ago(session, job.id, processed_at=ago + run, run_at=ago + run + wait)
    return job.id


def test_recent_figures_by_kind(session, registry):
    finished(session, registry, "noop", "completed", wait=2, run=10)
    finished(session, registry, "noop", "completed", wait=4, run=20)
    finished(session, registry, "noop", "failed", wait=6, run=30)
    finished(session, registry, "noop", "completed", wait=1, run=1, ago=7200)  # outside the hour
    finished(session, registry, "count", "cancelled", wait=None, run=None)  # cancelled while queued
    figures = metrics.read_recent(session, 3600)
    assert figures["noop"]["completed"] == 2 and figures["noop"]["failed"] == 1 and figures["noop"]["cancelled"] == 0
    assert figures["noop"]["runSeconds"] == {"p50": 20.0, "p95": 29.0, "p99": 29.8}
    assert figures["noop"]["waitSeconds"] == {"p50": 4.0, "p95": 5.8, "p99": 5.96}
    assert figures["count"] == {"completed": 0, "failed": 0, "cancelled": 1, "waitSeconds": None, "runSeconds": None}
    assert metrics.read_recent(session, 3600, "acme") == {}
    assert metrics.read_recent(session, 3 * 3600)["noop"]["completed"] == 3


ADMIN = "admin-token-for-the-metrics-test"


@pytest.fixture
def status_client(make_client):
    return make_client("status", API_TOKEN=TOKEN, API_TOKENS=f"acme={ACME_TOKEN}", ADMIN_TOKEN=ADMIN)


def test_the_metrics_view_answers_the_figures_to_a_token_holder(status_client, session, registry):
    known_queue(session, registry)
    finished(session, registry, "noop", "completed", wait=2, run=10)
    answer = status_client.get("/?view=metrics", headers={"Authorization": f"Bearer {ADMIN}"})
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert answer.headers["Cache-Control"] == "no-store"
    assert (body["tenant"], body["queued"], body["scheduled"], body["running"]) == (None, 4, 1, 2)
    assert 300 <= body["oldestQueuedAgeSeconds"] < 310 and 45 <= body["oldestHeartbeatAgeSeconds"] < 55
    assert body["windowSeconds"] == 3600
    assert body["byKind"]["noop"]["completed"] == 1 and body["byKind"]["noop"]["runSeconds"]["p50"] == 10.0
    acme = status_client.get("/?view=metrics", headers={"Authorization": f"Bearer {ACME_TOKEN}"}).get_json()
    assert (acme["tenant"], acme["queued"], acme["running"], acme["byKind"]) == ("acme", 1, 0, {})
    # With tenants configured, API_TOKEN is one tenant among others: its own jobs only.
    default = status_client.get("/?view=metrics", headers=AUTH).get_json()
    assert (default["tenant"], default["queued"]) == ("default", 3)


def test_api_token_sees_the_whole_queue_while_it_is_the_only_tenant(make_client, session, registry):
    known_queue(session, registry)
    body = make_client("status", API_TOKEN=TOKEN).get("/?view=metrics", headers=AUTH).get_json()
    assert (body["tenant"], body["queued"], body["running"]) == (None, 4, 2)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {TOKEN}x"}])
def test_the_metrics_view_requires_the_token(status_client, headers):
    answer = status_client.get("/?view=metrics", headers=headers)
    assert answer.status_code == 401 and answer.get_json()["error"]["code"] == "unauthorized"


def test_the_metrics_view_is_closed_without_any_token_configured(make_client):
    answer = make_client("status", API_TOKEN=None).get("/?view=metrics")
    assert answer.status_code == 401


@pytest.mark.parametrize("window", ["59", "604801", "abc", "-5", "1.5", ""])
def test_a_bad_window_is_named(status_client, window):
    answer = status_client.get(f"/?view=metrics&window={window}", headers=AUTH)
    assert answer.status_code == 400
    assert answer.get_json()["error"]["details"] == [
        {"field": "window", "message": "must be whole seconds from 60 to 604800"}
    ]


def log_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_sweep_logs_each_swept_job_and_the_gauges_once_per_tick(make_client, session, registry, capsys):
    ids = known_queue(session, registry)
    ages_ago(session, ids["run-a"], last_heartbeat=120)  # older than STALLED_AFTER_SECONDS (60)
    sweep = make_client("sweep")
    capsys.readouterr()
    assert sweep.post("/").status_code == 200
    lines = log_lines(capsys.readouterr().out)
    swept = [line for line in lines if line.get("event") == metrics.SWEPT]
    assert swept == [
        {
            "severity": "WARNING",
            "message": "Job swept: its heartbeat stopped",
            "jobId": ids["run-a"],
            "event": "job.swept",
            "outcome": "requeued",
            "kind": "noop",
            "tenant": "default",
            "attempt": 1,
        }
    ]
    gauges = [line for line in lines if line.get("event") == metrics.GAUGES]
    assert len(gauges) == 1
    # read after the sweep: the requeued job is queued now, the other one still runs
    assert (gauges[0]["queued"], gauges[0]["running"], gauges[0]["scheduled"]) == (5, 1, 1)
    assert 300 <= gauges[0]["oldestQueuedAgeSeconds"] < 310 and gauges[0]["oldestHeartbeatAgeSeconds"] < 15


@contextmanager
def serving(app):
    """A WSGI app on a real HTTP server on loopback."""

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = make_server("127.0.0.1", 0, app, handler_class=Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def test_the_cli_prints_the_figures(make_client, session, registry, capsys, monkeypatch):
    """`python -m client stats` against the status function, through a real HTTP server."""
    from client.__main__ import main  # noqa: PLC0415

    known_queue(session, registry)
    finished(session, registry, "noop", "completed", wait=2, run=10)
    client = make_client("status", API_TOKEN=TOKEN)
    with serving(client.application) as url:
        assert main(["--status-url", url, "--token", TOKEN, "stats", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["queued"] == 4
        assert main(["--status-url", url, "--token", TOKEN, "stats", "--window", "600"]) == 0
        table = capsys.readouterr().out
        assert "queued 4" in table and "running 2" in table and "scheduled 1" in table
        assert "oldest queued 30" in table  # 300.x s
        assert "noop" in table and "10.0" in table
        assert main(["--status-url", url, "--token", "nope", "stats"]) == 1
        assert "401" in capsys.readouterr().err
