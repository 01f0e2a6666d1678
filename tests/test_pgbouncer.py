"""A representative part of the suite again, through PgBouncer in transaction mode.

Each test imported here runs a second time with this module's `env`: DATABASE_URL points
at a PgBouncer (Debian's 1.18, started by local/pgbouncer.py) in front of the test's
database, DB_POOLER=transaction, and DATABASE_DIRECT_URL is the database itself, for LISTEN
and migrations. So the lifecycle, the runner, the functions, cancel by notification and the
connection budget are shown to hold with no session state between transactions.
"""

from __future__ import annotations

import threading
import uuid
from urllib.parse import urlsplit

import pg8000.native
import pytest

from local.pgbouncer import start_pgbouncer
from shared.core import queue
from shared.core.db import Pool, StatementTimeout
from shared.core.handlers import HandlerRegistry, builtin_handlers
from shared.core.runner import Outcome, Runner
from shared.core.settings import Settings
from tests import handlers
from tests.test_functions import (  # noqa: F401 (collected again, through the pooler)
    test_cancel_a_running_job_stops_it,
    test_enqueue_with_a_seen_idempotency_key_answers_200_with_the_same_job,
    test_process_of_a_named_job_runs_that_job,
    test_status_stream_delivers_live_events_quickly_and_closes_at_the_time_limit,
    test_status_stream_resumes_after_last_event_id_without_repeats,
    test_sweep_answers_its_counts,
)
from tests.test_ledger import test_a_run_writes_started_each_effect_and_finished_with_its_attempt_and_invocation  # noqa: F401
from tests.test_many_jobs import (  # noqa: F401
    runners,
    test_a_cancel_arrives_by_notification_within_a_second_without_lease_checks,
    test_a_cancel_followed_by_a_handler_exception_ends_the_job_cancelled,
    test_a_write_that_finds_the_pool_busy_waits_and_is_not_lost,
    test_forty_jobs_on_one_instance_hold_two_pooled_connections_and_one_listening,
    wait_until,
)
from tests.test_queue import (  # noqa: F401
    test_a_failure_retries_with_backoff_then_fails_for_good,
    test_a_repeated_idempotency_key_returns_the_existing_job,
    test_a_stale_lease_cannot_touch_a_job_that_was_swept_and_claimed_again,
    test_claim_takes_highest_priority_then_oldest_and_skips_future_jobs,
    test_sweep_requeues_a_stalled_job_then_fails_it_when_attempts_run_out,
)
from tests.test_runner import (  # noqa: F401
    test_a_job_runs_to_completion_with_progress_and_log_events_in_order,
    test_an_invocation_that_lost_its_lease_writes_nothing_and_stops,
)


@pytest.fixture(scope="module")
def bouncer(admin_url):
    upstream = urlsplit(admin_url)
    if upstream.hostname not in ("127.0.0.1", "localhost"):
        pytest.skip("PgBouncer tests need the test database on this machine")
    try:
        started = start_pgbouncer(upstream.port)
    except RuntimeError as exc:
        pytest.skip(f"PgBouncer tests skipped: {exc}")
    yield started
    started.remove()


@pytest.fixture
def env(env, database_url, bouncer):
    """The suite's env, with DATABASE_URL through the pooler."""
    name = urlsplit(database_url).path.lstrip("/")
    return {
        **env,
        "DATABASE_URL": bouncer.url_for(name),
        "DATABASE_DIRECT_URL": database_url,
        "DB_POOLER": "transaction",
    }


def test_these_tests_really_go_through_pgbouncer(settings, session, bouncer):
    assert settings.database.port == bouncer.port and session.pooled
    # PgBouncer answers its own admin console; PostgreSQL has no such database.
    admin = pg8000.native.Connection("postgres", host="127.0.0.1", port=bouncer.port, database="pgbouncer")
    try:
        assert any(row[0] == settings.database.database for row in admin.run("SHOW POOLS"))
    finally:
        admin.close()


def test_no_prepared_statement_outlives_its_transaction(pool, session, registry):
    queue.enqueue(session, registry, kind="noop", payload={})
    with pool.session() as pooled:
        queue.claim_next(pooled)
        assert pooled._prepared == {}
        assert pooled.run_sql("SELECT count(*) FROM pg_prepared_statements") == [[0]]


def test_a_transaction_through_the_pooler_is_one_transaction_that_rolls_back_whole(session):
    with session.transaction():
        first = session.run_sql("SELECT txid_current()")
        assert session.run_sql("SELECT txid_current()") == first
        assert session.run_sql("SHOW statement_timeout") == [["5s"]]
    with pytest.raises(RuntimeError), session.transaction():
        session.run_sql("INSERT INTO jobs (kind) VALUES ('rolled_back')")
        raise RuntimeError("undo it")
    assert session.run_sql("SELECT count(*) FROM jobs WHERE kind = 'rolled_back'") == [[0]]
    assert session.run_sql("SELECT 1") == [[1]]


def test_the_statement_timeout_holds_through_the_pooler(env):
    pool = Pool(Settings.from_env({**env, "DB_STATEMENT_TIMEOUT_SECONDS": "0.2"}))
    try:
        with pool.session() as pooled:
            assert pooled.run_sql("SHOW statement_timeout") == [["200ms"]]
            with pytest.raises(StatementTimeout):
                pooled.run_sql("SELECT pg_sleep(2)")
            assert pooled.run_sql("SELECT 1") == [[1]]
    finally:
        pool.close()


def test_a_pgbouncer_restart_mid_job_is_a_blip_the_writes_retry_through(env, pool, session, bouncer):
    settings = Settings.from_env(env)
    registry = HandlerRegistry({**builtin_handlers(), "slow_count": handlers.slow_count})
    runner = Runner(pool, registry, settings)
    gate = str(uuid.uuid4())
    job, _ = queue.enqueue(session, registry, kind="slow_count", payload={"tag": gate, "steps": 15, "stepSeconds": 0.1})
    outcomes: list = []
    worker = threading.Thread(target=lambda: outcomes.append(runner.run_next()))
    worker.start()
    try:
        wait_until(lambda: queue.get_job(session, job.id).progress > 0, what="the job to be running")
        bouncer.restart(down_seconds=1.0)
        worker.join(60)
    finally:
        runner.close()
    assert outcomes[0].outcome == Outcome.COMPLETED
    with pool.session() as pooled:
        events = queue.list_events(pooled, job.id)
    assert [event.data["message"] for event in events if event.kind == "log"] == [f"step {i}" for i in range(1, 16)]
