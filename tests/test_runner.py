"""The runner: a claimed job runs its handler under a heartbeat and ends in exactly one state."""

import re
import threading
import uuid

import pytest

from shared.core import maintenance, queue
from shared.core.errors import SettingsError
from shared.core.handlers import HandlerRegistry
from shared.core.queue import Lease
from shared.core.runner import Runner
from shared.core.settings import Settings
from tests import handlers


def make_runner(pool, registry, settings):
    return Runner(pool, registry, settings)


def enqueue(session, registry, kind, payload=None, **options):
    job, _ = queue.enqueue(session, registry, kind=kind, payload=payload or {}, **options)
    return job


def test_a_job_runs_to_completion_with_progress_and_log_events_in_order(pool, registry, settings, session):
    job = enqueue(session, registry, "steps", {"steps": 3})
    outcome = make_runner(pool, registry, settings).run_next()
    assert outcome.outcome == "completed" and outcome.job.id == job.id
    done = queue.get_job(session, job.id)
    assert done.job_status == "completed" and done.result == {"steps": 3} and done.progress == 100
    events = queue.list_events(session, job.id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    kinds = [e.kind for e in events]
    assert kinds == ["status", "status"] + ["progress", "log"] * 3 + ["status"]
    assert [e.data["progress"] for e in events if e.kind == "progress"] == [25, 50, 75]
    assert [e.data["message"] for e in events if e.kind == "log"] == ["line 1", "line 2", "line 3"]


def test_nothing_due_returns_none(pool, registry, settings):
    assert make_runner(pool, registry, settings).run_next() is None


def test_an_exception_retries_while_attempts_remain_then_succeeds(pool, registry, settings, session):
    job = enqueue(session, registry, "fail_until", {"failures": 2}, max_attempts=3)
    runner = make_runner(pool, registry, settings)
    first = runner.run_next()
    assert first.outcome == "retrying" and first.job.error == "RuntimeError: attempt 1 failed on purpose"
    assert runner.run_next().outcome == "retrying"
    third = runner.run_next()
    assert third.outcome == "completed" and third.job.result == {"attempt": 3}
    assert queue.get_job(session, job.id).attempts == 3


def test_an_exception_with_no_attempts_left_fails_the_job_with_its_message(pool, registry, settings, session):
    job = enqueue(session, registry, "fail_until", {"failures": 5}, max_attempts=1)
    outcome = make_runner(pool, registry, settings).run_next()
    assert outcome.outcome == "failed"
    failed = queue.get_job(session, job.id)
    assert failed.job_status == "failed" and "attempt 1 failed on purpose" in failed.error


def test_a_job_whose_kind_has_no_handler_fails_clearly_instead_of_crashing(pool, registry, settings, session):
    session.run_sql("INSERT INTO jobs (kind, max_attempts) VALUES ('vanished', 3)")
    outcome = make_runner(pool, registry, settings).run_next()
    assert outcome.outcome == "failed"
    assert outcome.job.error == "No handler for kind 'vanished'" and outcome.job.attempts == 1


def test_a_result_that_is_not_json_fails_the_job(pool, registry, settings, session):
    enqueue(session, registry, "not_json")
    outcome = make_runner(pool, registry, settings).run_next()
    assert outcome.outcome == "failed" and "not JSON" in outcome.job.error


def test_a_cancel_request_reaches_the_handler(pool, registry, settings, session):
    gate = str(uuid.uuid4())
    job = enqueue(session, registry, "wait_for_cancel", {"gate": gate, "seconds": 60})
    outcomes = []
    worker = threading.Thread(target=lambda: outcomes.append(make_runner(pool, registry, settings).run_next()))
    worker.start()
    assert handlers.STARTED.setdefault(gate, threading.Event()).wait(5)
    outcome, _ = queue.cancel(session, job.id)
    assert outcome is queue.CancelOutcome.REQUESTED
    worker.join(30)  # left alone, the handler would wait 60 s (how fast is make bench's question)
    assert not worker.is_alive()
    assert outcomes[0].outcome == "cancelled"
    final = queue.get_job(session, job.id)
    assert final.job_status == "cancelled" and final.current_step == "Cancelled"


def test_an_invocation_that_lost_its_lease_writes_nothing_and_stops(pool, registry, settings, session):
    gate = str(uuid.uuid4())
    job = enqueue(session, registry, "wait_for_cancel", {"gate": gate, "seconds": 10}, max_attempts=3)
    outcomes = []
    worker = threading.Thread(target=lambda: outcomes.append(make_runner(pool, registry, settings).run_next()))
    worker.start()
    assert handlers.STARTED.setdefault(gate, threading.Event()).wait(5)
    # The invocation looks dead to sweep, which requeues it; another invocation claims it.
    session.run_sql(
        "UPDATE jobs SET last_heartbeat = now() - interval '1 hour' WHERE id = CAST(:id AS uuid)", id=job.id
    )
    maintenance.sweep(session, stalled_after_seconds=60, retention_days=30)
    fresh = queue.claim_next(session)
    worker.join(5)
    assert not worker.is_alive()
    assert outcomes[0].outcome == "lost"
    current = queue.get_job(session, job.id)
    assert current.job_status == "running" and current.worker_token == fresh.worker_token
    assert queue.complete(session, Lease.of(fresh), {"second": True}).result == {"second": True}


def test_handlers_come_from_job_handlers(env, pool, session):
    settings = Settings.from_env({**env, "JOB_HANDLERS": "echo=tests.handlers:noop, tally = tests.handlers:count"})
    registry = HandlerRegistry.from_settings(settings)
    assert {"echo", "tally", "newsletter", "demo"} <= set(registry.kinds)
    queue.enqueue(session, registry, kind="echo", payload={})
    assert Runner(pool, registry, settings).run_next().job.result == {"ok": True}


def test_a_job_handler_that_cannot_be_imported_fails_at_start(env):
    settings = Settings.from_env({**env, "JOB_HANDLERS": "x=tests.no_such_module:handler"})
    with pytest.raises(SettingsError, match=re.escape("JOB_HANDLERS: x=tests.no_such_module:handler")):
        HandlerRegistry.from_settings(settings)


def test_the_demo_handler_runs_through_its_steps(pool, settings, session):
    registry = HandlerRegistry.from_settings(settings)
    job, _ = queue.enqueue(session, registry, kind="demo", payload={"steps": 2, "stepSeconds": 0})
    assert Runner(pool, registry, settings).run_next().outcome == "completed"
    assert queue.get_job(session, job.id).result == {"stepsDone": 2, "message": "Finished 2 steps"}


def test_a_handler_that_raises_jobcancelled_with_no_cancel_fails_its_attempt(pool, registry, settings, session):
    job = enqueue(session, registry, "stops_uncancelled", max_attempts=1)
    outcome = make_runner(pool, registry, settings).run_next()
    assert outcome.outcome == "failed" and "no cancel requested" in outcome.job.error
    assert queue.get_job(session, job.id).result is None
