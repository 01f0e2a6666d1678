"""The ledger that the scale and fault-campaign runs count runs with (bench/ledger.py)."""

from __future__ import annotations

import threading
import time

from bench import ledger
from shared.core import queue
from shared.core.handlers import HandlerRegistry
from shared.core.runner import Runner
from shared.core.settings import Settings

LEDGER_HANDLERS = {"JOB_HANDLERS": "ledger=bench.ledger:ledger_job"}


def ledger_settings(env) -> Settings:
    return Settings.from_env({**env, **LEDGER_HANDLERS})


def test_a_run_writes_started_each_effect_and_finished_with_its_attempt_and_invocation(env, pool, session):
    settings = ledger_settings(env)
    registry = HandlerRegistry.from_settings(settings)
    ledger.install(session)
    job, _ = queue.enqueue(session, registry, kind="ledger", payload={"steps": 3, "stepSeconds": 0})
    outcome = Runner(pool, registry, settings).run_next()
    assert outcome.outcome == "completed"
    rows = ledger.rows(session, job.id)
    assert [(r["event"], r["step"]) for r in rows] == [
        ("started", None),
        ("effect", 1),
        ("effect", 2),
        ("effect", 3),
        ("finished", 3),
    ]
    assert {r["attempt"] for r in rows} == {1}
    assert {r["invocation"] for r in rows} == {outcome.job.result["invocation"]}
    assert ledger.runs_per_job(session) == {job.id: 1}
    assert ledger.completions_per_job(session) == {job.id: 1}
    assert ledger.completed_more_than_once(session) == []


def test_a_failed_attempt_and_its_retry_are_two_runs_and_one_completion(env, pool, session):
    settings = ledger_settings(env)
    registry = HandlerRegistry.from_settings(settings)
    ledger.install(session)
    job, _ = queue.enqueue(
        session, registry, kind="ledger", payload={"steps": 2, "stepSeconds": 0, "failAtStep": 1}, max_attempts=1
    )
    assert Runner(pool, registry, settings).run_next().outcome == "failed"
    assert ledger.runs_per_job(session) == {job.id: 1}
    assert ledger.completions_per_job(session) == {}


def test_a_cancelled_run_records_where_it_stopped_and_no_completion(env, pool, session):
    settings = ledger_settings(env)
    registry = HandlerRegistry.from_settings(settings)
    ledger.install(session)
    job, _ = queue.enqueue(session, registry, kind="ledger", payload={"steps": 100, "stepSeconds": 0.05})
    outcomes = []
    worker = threading.Thread(target=lambda: outcomes.append(Runner(pool, registry, settings).run_next()))
    worker.start()
    deadline = time.monotonic() + 10
    while not ledger.runs_per_job(session):  # cancel once the handler has started
        assert time.monotonic() < deadline, "the ledger handler never started"
        time.sleep(0.01)
    queue.cancel(session, job.id)
    worker.join(10)
    assert outcomes[0].outcome == "cancelled"
    events = [r["event"] for r in ledger.rows(session, job.id)]
    assert events[0] == "started" and events[-1] == "stopped" and "finished" not in events


def test_the_double_completion_check_can_fail(env, pool, session):
    """The planted bug: the same job handed out twice. The ledger sees it; the status cannot."""
    settings = ledger_settings(env)
    registry = HandlerRegistry.from_settings(settings)
    ledger.install(session)
    job, _ = queue.enqueue(session, registry, kind="ledger", payload={"steps": 1, "stepSeconds": 0})
    runner = Runner(pool, registry, settings)
    assert runner.run_next().outcome == "completed"
    session.run_sql("UPDATE jobs SET job_status = 'queued', finished_at = NULL WHERE id = CAST(:id AS uuid)", id=job.id)
    assert runner.run_next().outcome == "completed"
    assert queue.get_job(session, job.id).job_status == "completed"  # the status looks fine
    assert ledger.completed_more_than_once(session) == [job.id]


def test_the_process_function_runs_ledger_jobs_registered_through_job_handlers(make_client, env, session):
    ledger.install(session)
    client = make_client("process", **LEDGER_HANDLERS)
    settings_registry = HandlerRegistry.from_settings(
        Settings.from_env({"DATABASE_URL": "postgresql://x@h/d", **LEDGER_HANDLERS})
    )
    job, _ = queue.enqueue(session, settings_registry, kind="ledger", payload={"steps": 2, "stepSeconds": 0})
    answer = client.post("/", json={"id": job.id})
    assert answer.status_code == 200 and answer.get_json()["jobStatus"] == "completed"
    assert ledger.completions_per_job(session) == {job.id: 1}
