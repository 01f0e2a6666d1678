"""Many jobs per instance at almost no database cost: no connection held while a handler
runs, one heartbeat and one lease check per instance for all its jobs, cancel by
notification, a run time limit, and a pool that makes a job wait, never fail."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from local import postgres
from shared.core import notifier, queue, watcher
from shared.core.db import Pool
from shared.core.errors import SettingsError
from shared.core.handlers import HandlerRegistry, builtin_handlers
from shared.core.jobs import JobStatus
from shared.core.queue import Lease
from shared.core.runner import Outcome, Runner
from shared.core.settings import Settings
from tests import handlers

STARTED: dict[str, threading.Event] = {}
GATES: dict[str, threading.Event] = {}


def _events(payload: dict) -> tuple[threading.Event, threading.Event]:
    return STARTED.setdefault(payload["gate"], threading.Event()), GATES.setdefault(payload["gate"], threading.Event())


def raise_after_gate(payload: dict, ctx) -> None:
    """Raises once the test opens its gate, whether or not it saw a cancel."""
    started, gate = _events(payload)
    started.set()
    gate.wait(10)
    raise RuntimeError("the handler broke after the cancel")


def write_after_gate(payload: dict, ctx) -> dict:
    started, gate = _events(payload)
    started.set()
    gate.wait(10)
    ctx.progress(50, message="written after the wait")
    ctx.log("a line that must not be lost")
    return {"wrote": True}


def wait_for_cancel_only(payload: dict, ctx) -> dict:
    """Ignores nothing: returns as soon as it is told to stop, or after `seconds`."""
    started, _ = _events(payload)
    started.set()
    told = ctx.cancelled.wait(payload.get("seconds", 10))
    return {"told": told}


def make_registry() -> HandlerRegistry:
    local = {"raise_after_gate": raise_after_gate, "write_after_gate": write_after_gate}
    return HandlerRegistry({**builtin_handlers(), **handlers.ALL, **local, "wait_only": wait_for_cancel_only})


def wait_until(predicate, timeout: float = 10.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def start_job(runner: Runner, outcomes: list) -> threading.Thread:
    worker = threading.Thread(target=lambda: outcomes.append(runner.run_next()))
    worker.start()
    return worker


def start_waiting_job(runner: Runner, session, seconds: float):
    """A job that waits `seconds` for a cancel, started by `runner` on a thread of its own:
    (the job, the list its outcome goes to, the thread)."""
    gate = str(uuid.uuid4())
    job, _ = queue.enqueue(session, make_registry(), kind="wait_only", payload={"gate": gate, "seconds": seconds})
    outcomes: list = []
    worker = start_job(runner, outcomes)
    assert STARTED.setdefault(gate, threading.Event()).wait(10)
    return job, outcomes, worker


@pytest.fixture
def runners():
    made: list[Runner] = []

    def make(pool, settings, **options) -> Runner:
        runner = Runner(pool, make_registry(), settings, **options)
        made.append(runner)
        return runner

    yield make
    for runner in made:
        runner.close()


def connections(session, database_url: str) -> dict[str, int]:
    rows = session.run_sql(
        "SELECT application_name, count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name LIKE 'jobqueue%' AND pid <> pg_backend_pid()"
        " GROUP BY application_name"
    )
    return dict(rows)


def test_forty_jobs_on_one_instance_hold_two_pooled_connections_and_one_listening(env, database_url, session, runners):
    settings = Settings.from_env({**env, "DB_POOL_SIZE": "2"})
    pool = Pool(settings)
    runner = runners(pool, settings)
    registry = make_registry()
    gates = [str(uuid.uuid4()) for _ in range(40)]
    for gate in gates:
        queue.enqueue(session, registry, kind="wait_for_cancel", payload={"gate": gate, "seconds": 20})
    outcomes: list = []
    workers = [start_job(runner, outcomes) for _ in gates]
    try:
        for gate in gates:
            assert handlers.STARTED.setdefault(gate, threading.Event()).wait(20)
        wait_until(lambda: runner.watcher.listening, what="the listening connection")
        time.sleep(1.2)  # a few heartbeats and ticks while all 40 wait
        held = connections(session, database_url)
        assert held.get("jobqueue", 0) <= 2 and held.get("jobqueue-notifier") == 1, held
        running = session.run_sql("SELECT count(*) FROM jobs WHERE job_status = 'running'")[0][0]
        assert running == 40
    finally:
        for gate in gates:
            handlers.GATES.setdefault(gate, threading.Event()).set()
        for worker in workers:
            worker.join(20)
        runner.close()
        pool.close()
    assert [outcome.outcome for outcome in outcomes] == [Outcome.COMPLETED] * 40
    assert pool.opened <= 2


def test_one_heartbeat_statement_keeps_every_running_job_alive(env, pool, session, runners):
    settings = Settings.from_env({**env, "HEARTBEAT_SECONDS": "0.3"})
    runner = runners(pool, settings)
    registry = make_registry()
    gates = [str(uuid.uuid4()) for _ in range(10)]
    for gate in gates:
        queue.enqueue(session, registry, kind="wait_for_cancel", payload={"gate": gate, "seconds": 20})
    outcomes: list = []
    workers = [start_job(runner, outcomes) for _ in gates]
    try:
        for gate in gates:
            assert handlers.STARTED.setdefault(gate, threading.Event()).wait(20)
        beats_before = runner.watcher.stats.heartbeats
        time.sleep(1.5)
        beats = runner.watcher.stats.heartbeats - beats_before
        assert 1 <= beats <= 7  # one statement per 0.3 s for all ten jobs, not ten per beat
        oldest = session.run_sql(
            "SELECT max(extract(epoch FROM now() - last_heartbeat)) FROM jobs WHERE job_status = 'running'"
        )[0][0]
        assert float(oldest) < 1.0
    finally:
        for gate in gates:
            handlers.GATES.setdefault(gate, threading.Event()).set()
        for worker in workers:
            worker.join(20)


def cancel_latency(runner: Runner, session, wait_for_listener: bool) -> tuple[float | None, list]:
    job, outcomes, worker = start_waiting_job(runner, session, 5)
    # Past LISTEN_AFTER_SECONDS the watcher has subscribed: listening, or trying to connect.
    wait_until(lambda: runner.watcher.cancels is not None, what="the watcher to subscribe to cancels")
    if wait_for_listener:  # and its catch-up read done: then only a notification can carry the cancel
        wait_until(lambda: runner.watcher.caught_up, what="the listening connection")
    requested = time.monotonic()
    queue.cancel(session, job.id)
    worker.join(10)
    seen = time.monotonic() - requested
    return (seen if outcomes and outcomes[0].job.result is None else None), outcomes


def test_a_cancel_arrives_by_notification_within_a_second_without_lease_checks(env, pool, session, runners):
    settings = Settings.from_env({**env, "CANCEL_CHECK_SECONDS": "30"})  # no check could carry it in time
    runner = runners(pool, settings)
    seconds, outcomes = cancel_latency(runner, session, wait_for_listener=True)
    # Within seconds, not the 30 s a check would take (the p99 is measured by make scale).
    assert outcomes[0].outcome == Outcome.CANCELLED and seconds < 5.0
    # At most the one read the listener's start asks for (a cancel sent before it heard nothing).
    assert runner.watcher.stats.notified == 1 and runner.watcher.stats.checks <= 1


def test_without_the_notification_the_same_cancel_is_not_seen_within_a_second(env, pool, session, runners):
    """The planted bug for the test above: no LISTEN connection, so only the (slow) checks."""
    settings = Settings.from_env({**env, "CANCEL_CHECK_SECONDS": "30", "HEARTBEAT_SECONDS": "0.5"})
    runner = runners(pool, settings, listen=False)
    gate = str(uuid.uuid4())
    job, _ = queue.enqueue(session, make_registry(), kind="wait_only", payload={"gate": gate, "seconds": 3})
    outcomes: list = []
    worker = start_job(runner, outcomes)
    assert STARTED.setdefault(gate, threading.Event()).wait(10)
    queue.cancel(session, job.id)
    worker.join(1.0)
    assert worker.is_alive()  # still waiting: the cancel has not reached it
    worker.join(10)


def test_while_the_listening_connection_is_down_lease_checks_carry_cancels(env, pool, session, runners):
    closed = f"postgresql://postgres@127.0.0.1:{postgres.free_port()}/none"  # nothing listens there
    settings = Settings.from_env({**env, "DATABASE_DIRECT_URL": closed})
    runner = runners(pool, settings)
    seconds, outcomes = cancel_latency(runner, session, wait_for_listener=False)
    assert not runner.watcher.listening
    assert outcomes[0].outcome == Outcome.CANCELLED and seconds < 5.0
    assert runner.watcher.stats.checks >= 1 and runner.watcher.stats.notified == 0


def test_a_dropped_listening_connection_reconnects_and_carries_cancels_again(env, pool, session, runners):
    settings = Settings.from_env({**env, "CANCEL_CHECK_SECONDS": "30"})
    runner = runners(pool, settings)
    gate = str(uuid.uuid4())
    job, _ = queue.enqueue(session, make_registry(), kind="wait_only", payload={"gate": gate, "seconds": 10})
    outcomes: list = []
    worker = start_job(runner, outcomes)
    assert STARTED.setdefault(gate, threading.Event()).wait(10)
    wait_until(lambda: runner.watcher.listening, what="the listening connection")
    runner.watcher.notifier.drop_connection()
    wait_until(lambda: not runner.watcher.listening, what="the listener to notice")
    wait_until(lambda: runner.watcher.caught_up, what="the listener to reconnect")
    queue.cancel(session, job.id)
    worker.join(2)
    assert outcomes and outcomes[0].outcome == Outcome.CANCELLED and runner.watcher.stats.notified == 1


def notifier_backends(session) -> int:
    return session.run_sql(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND application_name = 'jobqueue-notifier'"
    )[0][0]


def test_short_jobs_never_listen(env, pool, session, runners, monkeypatch):
    """A LISTEN costs the whole database (PostgreSQL signals every listener in it at each
    NOTIFY: watcher.py's docstring), so a job that ends before listen_after never starts one.
    (The bound is raised to 5 s so that a job stalled on a loaded machine is still short.)"""
    monkeypatch.setattr(watcher, "LISTEN_AFTER_SECONDS", 5.0)
    runner = runners(pool, Settings.from_env(env))
    for _ in range(40):
        queue.enqueue(session, make_registry(), kind="noop", payload={})
    listened = []
    while (outcome := runner.run_next()) is not None:
        assert outcome.outcome == Outcome.COMPLETED
        listened.append(runner.watcher.cancels is not None or notifier_backends(session) > 0)
    assert listened == [False] * 40


def test_a_long_job_is_listened_for_until_a_while_after_it_ends(env, pool, session, runners, monkeypatch):
    monkeypatch.setattr(watcher, "LISTEN_LINGER_SECONDS", 0.5)
    runner = runners(pool, Settings.from_env({**env, "CANCEL_CHECK_SECONDS": "30"}))
    job, outcomes, worker = start_waiting_job(runner, session, 30)
    wait_until(lambda: runner.watcher.caught_up, what="the listener, once the job ran a quarter of a second")
    queue.cancel(session, job.id)
    worker.join(10)
    assert outcomes[0].outcome == Outcome.CANCELLED and runner.watcher.stats.notified == 1
    wait_until(lambda: runner.watcher.cancels is None, what="the listener to leave after the linger")
    wait_until(lambda: notifier_backends(session) == 0, what="its connection to close")
    assert not runner.watcher.exited  # the watcher stays (WATCHER_IDLE_SECONDS): only the LISTEN went


def test_a_young_jobs_cancel_is_read_as_soon_as_the_listener_is_up(env, pool, session, runners):
    """Cancelled before the watcher listens (a job younger than LISTEN_AFTER_SECONDS): its NOTIFY
    reached no one, so the listener's start reads the leases at once, not at the next tick."""
    runner = runners(pool, Settings.from_env({**env, "CANCEL_CHECK_SECONDS": "30"}))
    job, outcomes, worker = start_waiting_job(runner, session, 60)
    queue.cancel(session, job.id)
    worker.join(15)  # the next tick is 30 s away
    assert outcomes and outcomes[0].outcome == Outcome.CANCELLED


def test_a_check_in_flight_as_the_listener_starts_does_not_lose_the_cancel(env, pool, session, runners, monkeypatch):
    """Staged: a lease check reads before the cancel commits, the cancel's NOTIFY reaches no one
    (LISTEN not yet up), the listener's start marks every job to be read again, and only then
    does the check return: it must not clear that mark, or only a heartbeat would carry the
    cancel (HEARTBEAT_SECONDS, 50 s here). The listener's connection is slowed, as a remote
    database's TLS would, so that the watcher's ticks (every 0.05 s) land while it connects."""
    real_connect = notifier.connect

    def slow_connect(*args, **kwargs):
        time.sleep(0.3)
        return real_connect(*args, **kwargs)

    monkeypatch.setattr(notifier, "connect", slow_connect)
    runner = runners(pool, Settings.from_env({**env, "CANCEL_CHECK_SECONDS": "0.05", "HEARTBEAT_SECONDS": "50"}))
    gate = str(uuid.uuid4())
    job, _ = queue.enqueue(session, make_registry(), kind="wait_only", payload={"gate": gate, "seconds": 60})
    real_check, staged = queue.check_leases, threading.Event()

    def check_leases(check_session, leases):
        held = real_check(check_session, leases)  # read before the cancel
        watcher = runner.watcher
        if not staged.is_set() and watcher.cancels is not None and not watcher.listening:
            staged.set()
            heard = watcher._heard
            with pool.session() as other:
                queue.cancel(other, job.id)
            wait_until(lambda: watcher._heard > heard, what="the listener's start")
        return held

    monkeypatch.setattr(queue, "check_leases", check_leases)
    outcomes: list = []
    worker = start_job(runner, outcomes)
    assert STARTED.setdefault(gate, threading.Event()).wait(10)
    assert staged.wait(15), "the listener came up without a check in flight: nothing was staged"
    worker.join(15)
    assert outcomes and outcomes[0].outcome == Outcome.CANCELLED


def test_a_cancel_followed_by_a_handler_exception_ends_the_job_cancelled(env, pool, session, runners):
    # Nothing tells the handler of the cancel in time (no listener, slow checks): it raises.
    settings = Settings.from_env(
        {**env, "CANCEL_CHECK_SECONDS": "30", "HEARTBEAT_SECONDS": "30", "STALLED_AFTER_SECONDS": "60"}
    )
    runner = runners(pool, settings, listen=False)
    gate = str(uuid.uuid4())
    job, _ = queue.enqueue(session, make_registry(), kind="raise_after_gate", payload={"gate": gate}, max_attempts=3)
    outcomes: list = []
    worker = start_job(runner, outcomes)
    assert STARTED.setdefault(gate, threading.Event()).wait(10)
    queue.cancel(session, job.id)
    GATES.setdefault(gate, threading.Event()).set()
    worker.join(10)
    assert outcomes[0].outcome == Outcome.CANCELLED
    final = queue.get_job(session, job.id)
    assert final.job_status == JobStatus.CANCELLED and final.current_step == "Cancelled" and final.attempts == 1


def test_failing_an_attempt_whose_cancel_was_requested_cancels_the_job(session, registry):
    job, _ = queue.enqueue(session, registry, kind="noop", payload={}, max_attempts=3)
    claimed = queue.claim_next(session)
    queue.cancel(session, job.id)
    ended = queue.fail(session, Lease.of(claimed), "boom", retry_delay=0, retryable=True)
    assert ended.job_status == JobStatus.CANCELLED and ended.finished_at is not None


def test_a_job_past_its_time_limit_is_told_to_stop_and_its_attempt_fails_as_timed_out(env, pool, session, runners):
    settings = Settings.from_env({**env, "JOB_MAX_RUN_SECONDS": "1", "JOB_TIMEOUT_SECONDS": "15"})
    runner = runners(pool, settings)
    gate = str(uuid.uuid4())
    job, _ = queue.enqueue(
        session, make_registry(), kind="wait_only", payload={"gate": gate, "seconds": 10}, max_attempts=2
    )
    started = time.monotonic()
    outcome = runner.run_next()
    took = time.monotonic() - started
    assert outcome.outcome == Outcome.RETRYING and 1.0 <= took < 8.0  # told at 1 s, not after its 10 s
    assert outcome.job.error == "Timed out: ran past JOB_MAX_RUN_SECONDS (1 s)"
    assert runner.watcher.stats.timed_out == 1
    assert queue.get_job(session, job.id).job_status == JobStatus.QUEUED


def test_when_listening_cannot_start_the_ticks_still_keep_time_and_heartbeats(env, pool, session, runners, monkeypatch):
    """Subscribing can fail (no thread left to start one): the watcher's loop must not spin on it
    and must still tick, beat and stop a job past its time limit."""

    def refuse(*args, **kwargs):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(notifier.Notifier, "subscribe", refuse)
    settings = Settings.from_env(
        {**env, "JOB_MAX_RUN_SECONDS": "1", "JOB_TIMEOUT_SECONDS": "15", "HEARTBEAT_SECONDS": "0.2"}
    )
    runner = runners(pool, settings)
    queue.enqueue(session, make_registry(), kind="wait_only", payload={"gate": str(uuid.uuid4()), "seconds": 10})
    outcome = runner.run_next()
    assert outcome.outcome == Outcome.RETRYING and runner.watcher.stats.timed_out == 1
    assert runner.watcher.stats.heartbeats >= 1 and not runner.watcher.listening


def test_the_time_limit_must_be_below_the_process_functions_timeout():
    base = {"DATABASE_URL": "postgresql://u@h/d"}
    assert Settings.from_env(base).job_max_run_seconds == 1740
    assert Settings.from_env({**base, "JOB_TIMEOUT_SECONDS": "600"}).job_max_run_seconds == 540
    with pytest.raises(SettingsError, match=r"JOB_MAX_RUN_SECONDS \(600\) must be below JOB_TIMEOUT_SECONDS \(600\)"):
        Settings.from_env({**base, "JOB_TIMEOUT_SECONDS": "600", "JOB_MAX_RUN_SECONDS": "600"})
    with pytest.raises(SettingsError, match="MAX_ATTEMPTS_LIMIT must be at most 100"):
        Settings.from_env({**base, "MAX_ATTEMPTS_LIMIT": "101"})


def test_max_attempts_is_bounded_by_the_setting(make_client, function_env):
    client = make_client("enqueue", MAX_ATTEMPTS_LIMIT="5")
    auth = {"Authorization": f"Bearer {function_env['API_TOKEN']}"}
    answer = client.post("/", json={"kind": "noop", "maxAttempts": 6}, headers=auth)
    assert answer.status_code == 400
    details = answer.get_json()["error"]["details"]
    assert details == [{"field": "maxAttempts", "message": "must be a whole number from 1 to 5"}]
    ok = client.post("/", json={"kind": "noop", "maxAttempts": 5}, headers=auth)
    assert ok.status_code == 202 and ok.get_json()["maxAttempts"] == 5


def test_a_write_that_finds_the_pool_busy_waits_and_is_not_lost(env, session, runners):
    settings = Settings.from_env({**env, "DB_POOL_SIZE": "1", "DB_POOL_TIMEOUT_SECONDS": "0.1"})
    pool = Pool(settings)
    runner = runners(pool, settings)
    gate = str(uuid.uuid4())
    job, _ = queue.enqueue(session, make_registry(), kind="write_after_gate", payload={"gate": gate})
    outcomes: list = []
    try:
        worker = start_job(runner, outcomes)
        assert STARTED.setdefault(gate, threading.Event()).wait(10)
        with pool.session():  # every connection of the instance busy for a second
            GATES.setdefault(gate, threading.Event()).set()
            time.sleep(1.0)
            assert worker.is_alive() and not outcomes
        worker.join(10)
    finally:
        pool.close()
    assert outcomes[0].outcome == Outcome.COMPLETED
    kinds = [(event.kind, event.data.get("message")) for event in queue.list_events(session, job.id)]
    assert ("progress", "written after the wait") in kinds and ("log", "a line that must not be lost") in kinds
