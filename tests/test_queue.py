"""The lifecycle operations, one SQL statement each, on a real PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest

from shared.core import maintenance, queue
from shared.core.backoff import backoff_seconds
from shared.core.errors import LeaseLost, NotFound, ValidationError
from shared.core.queue import CancelOutcome, Lease


def enqueue(session, registry, kind="noop", payload=None, **options):
    job, _ = queue.enqueue(session, registry, kind=kind, payload=payload or {}, **options)
    return job


def count_jobs(session) -> int:
    return session.run_sql("SELECT count(*) FROM jobs")[0][0]


def age_heartbeat(session, job_id, seconds):
    session.run_sql(
        "UPDATE jobs SET last_heartbeat = now() - make_interval(secs => :s) WHERE id = CAST(:id AS uuid)",
        s=seconds,
        id=job_id,
    )


def test_enqueue_makes_a_queued_job_with_a_random_id_and_the_seed_field_names(session, registry):
    job = enqueue(session, registry, payload={"dateRange": {"from": "2025-01-01"}})
    other = enqueue(session, registry)
    body = job.to_json()
    assert body["jobStatus"] == "queued"
    assert body["generationId"] == body["id"] == job.id
    assert body["progress"] == 0 and body["currentStep"] == "Queued"
    assert body["attempts"] == 0 and body["maxAttempts"] == 3 and body["priority"] == 0
    assert body["createdAt"].endswith("Z") and body["lastHeartbeat"] is None
    assert body["cancelRequested"] is False
    assert job.id != other.id and job.id[14] == "4"  # a version-4 (random) UUID
    assert job.payload == {"dateRange": {"from": "2025-01-01"}}


def test_idempotency_keys_belong_to_their_tenant(session, registry):
    ours, created = queue.enqueue(session, registry, kind="noop", payload={}, idempotency_key="k-1", tenant="acme")
    theirs, created_theirs = queue.enqueue(
        session, registry, kind="noop", payload={}, idempotency_key="k-1", tenant="globex"
    )
    assert created and created_theirs and ours.id != theirs.id
    assert (ours.tenant, theirs.tenant) == ("acme", "globex")
    again, created_again = queue.enqueue(
        session, registry, kind="noop", payload={}, idempotency_key="k-1", tenant="acme"
    )
    assert again.id == ours.id and not created_again


def test_a_repeated_idempotency_key_returns_the_existing_job(session, registry):
    first, created = queue.enqueue(session, registry, kind="noop", payload={"a": 1}, idempotency_key="k-1")
    again, created_again = queue.enqueue(session, registry, kind="noop", payload={"a": 1}, idempotency_key="k-1")
    assert created and not created_again
    assert again.id == first.id and again.payload == {"a": 1}
    assert count_jobs(session) == 1


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"payload": ["not", "an", "object"]}, "payload"),
        ({"max_attempts": 0}, "maxAttempts"),
        ({"max_attempts": "3"}, "maxAttempts"),
        ({"run_at": "next tuesday"}, "runAt"),
        ({"run_at": 12}, "runAt"),
        ({"kind": "no_such_kind"}, "kind"),
        ({"priority": 1.5}, "priority"),
        ({"idempotency_key": ""}, "idempotencyKey"),
    ],
)
def test_bad_input_raises_a_clear_error_and_writes_nothing(session, registry, options, field):
    arguments = {"kind": "noop", "payload": {}, **options}
    with pytest.raises(ValidationError) as raised:
        queue.enqueue(session, registry, **arguments)
    assert field in [detail["field"] for detail in raised.value.details]
    assert field in raised.value.message
    assert count_jobs(session) == 0


def test_every_bad_field_is_named_at_once(session, registry):
    with pytest.raises(ValidationError) as raised:
        queue.enqueue(session, registry, kind="noop", payload=[], max_attempts=0, run_at="soon")
    assert {d["field"] for d in raised.value.details} == {"payload", "maxAttempts", "runAt"}


def test_a_handler_validator_refuses_a_bad_payload(session, registry):
    with pytest.raises(ValidationError) as raised:
        queue.enqueue(session, registry, kind="demo", payload={"steps": -1})
    assert raised.value.details[0]["field"] == "steps"
    assert count_jobs(session) == 0


def test_claim_takes_highest_priority_then_oldest_and_skips_future_jobs(session, registry):
    later = datetime.now(UTC) + timedelta(hours=1)
    low_old = enqueue(session, registry)
    low_new = enqueue(session, registry)
    high = enqueue(session, registry, priority=5)
    enqueue(session, registry, priority=10, run_at=later)
    order = [queue.claim_next(session).id for _ in range(3)]
    assert order == [high.id, low_old.id, low_new.id]
    assert queue.claim_next(session) is None


def test_claim_bumps_attempts_and_hands_out_a_fresh_lease(session, registry):
    job = enqueue(session, registry)
    claimed = queue.claim_next(session)
    assert claimed.id == job.id
    assert claimed.job_status == "running" and claimed.attempts == 1
    assert claimed.worker_token and claimed.processed_at and claimed.last_heartbeat


def test_claim_of_a_named_job_needs_it_queued_and_due(session, registry):
    due = enqueue(session, registry)
    future = enqueue(session, registry, run_at=datetime.now(UTC) + timedelta(minutes=5))
    assert queue.claim_named(session, future.id) is None
    claimed = queue.claim_named(session, due.id)
    assert claimed.id == due.id and claimed.job_status == "running"
    assert queue.claim_named(session, due.id) is None  # already running: a duplicate delivery
    assert queue.claim_named(session, "00000000-0000-4000-8000-000000000000") is None


def test_progress_log_and_complete_write_events_in_sequence(session, registry):
    enqueue(session, registry)
    job = queue.claim_next(session)
    lease = Lease.of(job)
    queue.record_progress(session, lease, 40, "Processing", "fetching")
    queue.append_event(session, lease, "log", {"level": "info", "message": "hello"})
    done = queue.complete(session, lease, {"answer": 42})
    assert done.job_status == "completed" and done.result == {"answer": 42}
    assert done.progress == 100 and done.current_step == "Complete" and done.finished_at
    events = queue.list_events(session, job.id)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert [e.kind for e in events] == ["status", "status", "progress", "log", "status"]
    assert events[2].data == {"progress": 40, "currentStep": "Processing", "message": "fetching"}
    assert events[4].data["jobStatus"] == "completed"
    assert [e.seq for e in queue.list_events(session, job.id, after_seq=3)] == [4, 5]


def test_a_failure_retries_with_backoff_then_fails_for_good(session, registry):
    job = enqueue(session, registry, max_attempts=2)
    first = queue.claim_next(session)
    retried = queue.fail(session, Lease.of(first), "boom 1", retry_delay=30)
    assert retried.job_status == "queued" and retried.error == "boom 1" and retried.finished_at is None
    assert retried.run_at > datetime.now(UTC) + timedelta(seconds=25)
    assert queue.claim_next(session) is None  # not due yet
    session.run_sql("UPDATE jobs SET run_at = now() WHERE id = CAST(:id AS uuid)", id=job.id)
    second = queue.claim_next(session)
    assert second.attempts == 2
    failed = queue.fail(session, Lease.of(second), "boom 2", retry_delay=30)
    assert failed.job_status == "failed" and failed.error == "boom 2" and failed.finished_at


def test_a_non_retryable_failure_fails_at_once(session, registry):
    enqueue(session, registry, max_attempts=5)
    job = queue.claim_next(session)
    assert queue.fail(session, Lease.of(job), "bad kind", retry_delay=0, retryable=False).job_status == "failed"


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    delays = [backoff_seconds(attempt, base=10, cap=3600) for attempt in (1, 2, 3, 4)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = 10 * 2 ** (attempt - 1)
        assert ceiling / 2 <= delay <= ceiling
    assert backoff_seconds(30, base=10, cap=60) <= 60


def test_cancel_a_queued_job_at_once(session, registry):
    job = enqueue(session, registry)
    outcome, cancelled = queue.cancel(session, job.id)
    assert outcome is CancelOutcome.CANCELLED
    assert cancelled.job_status == "cancelled" and cancelled.finished_at and cancelled.cancel_requested_at
    assert queue.claim_next(session) is None
    again, _ = queue.cancel(session, job.id)
    assert again is CancelOutcome.ALREADY_CANCELLED


def test_cancel_a_running_job_is_a_request_its_heartbeat_reports(session, registry):
    enqueue(session, registry)
    job = queue.claim_next(session)
    lease = Lease.of(job)
    assert queue.record_heartbeat(session, lease) is False
    outcome, requested = queue.cancel(session, job.id)
    assert outcome is CancelOutcome.REQUESTED and requested.job_status == "running"
    assert queue.cancel(session, job.id)[0] is CancelOutcome.REQUESTED  # twice is harmless
    assert queue.record_heartbeat(session, lease) is True
    assert queue.check_lease(session, lease) is True
    assert queue.finish_cancelled(session, lease).job_status == "cancelled"
    events = [e for e in queue.list_events(session, job.id) if e.data.get("cancelRequested")]
    assert len(events) == 1  # the second request wrote nothing


def test_cancel_of_a_finished_job_is_a_distinct_outcome(session, registry):
    enqueue(session, registry)
    job = queue.claim_next(session)
    queue.complete(session, Lease.of(job), None)
    outcome, finished = queue.cancel(session, job.id)
    assert outcome is CancelOutcome.ALREADY_FINISHED and finished.job_status == "completed"


def test_cancel_of_an_unknown_job_is_not_found(session):
    with pytest.raises(NotFound):
        queue.cancel(session, "00000000-0000-4000-8000-000000000000")


def test_sweep_requeues_a_stalled_job_then_fails_it_when_attempts_run_out(session, registry):
    job = enqueue(session, registry, max_attempts=2)
    queue.claim_next(session)
    age_heartbeat(session, job.id, 120)
    report = maintenance.sweep(session, stalled_after_seconds=60, retention_days=30)
    assert (report.requeued, report.failed, report.cancelled) == (1, 0, 0)
    assert [swept.id for swept in report.requeued_jobs] == [job.id]
    requeued = queue.get_job(session, job.id)
    assert requeued.job_status == "queued" and requeued.error == "Job processor stopped responding"

    queue.claim_next(session)
    age_heartbeat(session, job.id, 120)
    report = maintenance.sweep(session, stalled_after_seconds=60, retention_days=30)
    assert (report.requeued, report.failed) == (0, 1)
    failed = queue.get_job(session, job.id)
    assert failed.job_status == "failed" and failed.error == "Job processor stopped responding"


def test_sweep_leaves_a_fresh_heartbeat_alone(session, registry):
    enqueue(session, registry)
    job = queue.claim_next(session)
    age_heartbeat(session, job.id, 30)
    assert maintenance.sweep(session, stalled_after_seconds=60, retention_days=30).to_json() == {
        "requeued": 0,
        "failed": 0,
        "cancelled": 0,
        "archived": 0,
    }
    assert queue.get_job(session, job.id).job_status == "running"


def test_sweep_never_requeues_a_job_whose_cancel_was_requested(session, registry):
    job = enqueue(session, registry, max_attempts=5)
    queue.claim_next(session)
    queue.cancel(session, job.id)
    age_heartbeat(session, job.id, 120)
    report = maintenance.sweep(session, stalled_after_seconds=60, retention_days=30)
    assert (report.requeued, report.cancelled) == (0, 1)
    assert queue.get_job(session, job.id).job_status == "cancelled"


def test_sweep_archives_old_finished_jobs_with_their_events(session, registry):
    old = enqueue(session, registry)
    recent = enqueue(session, registry)
    for _ in range(2):
        queue.complete(session, Lease.of(queue.claim_next(session)), {"done": True})
    session.run_sql("UPDATE jobs SET finished_at = now() - interval '31 days' WHERE id = CAST(:id AS uuid)", id=old.id)
    report = maintenance.sweep(session, stalled_after_seconds=60, retention_days=30)
    assert report.archived == 1
    live = {str(row[0]) for row in session.run_sql("SELECT id FROM jobs")}
    assert live == {recent.id}
    archived = queue.get_job(session, old.id)  # still found by the status endpoint
    assert archived.job_status == "completed" and archived.result == {"done": True}
    assert [e.kind for e in queue.list_events(session, old.id)] == ["status", "status", "status"]


def test_a_stale_lease_cannot_touch_a_job_that_was_swept_and_claimed_again(session, registry):
    job = enqueue(session, registry, max_attempts=3)
    stale = Lease.of(queue.claim_next(session))
    age_heartbeat(session, job.id, 120)
    maintenance.sweep(session, stalled_after_seconds=60, retention_days=30)
    fresh = Lease.of(queue.claim_next(session))
    assert fresh.token != stale.token
    for write in (
        lambda: queue.record_heartbeat(session, stale),
        lambda: queue.check_lease(session, stale),
        lambda: queue.record_progress(session, stale, 50, "Zombie", None),
        lambda: queue.append_event(session, stale, "log", {"message": "zombie"}),
        lambda: queue.complete(session, stale, {"zombie": True}),
        lambda: queue.fail(session, stale, "zombie", retry_delay=0),
        lambda: queue.finish_cancelled(session, stale),
    ):
        with pytest.raises(LeaseLost):
            write()
    current = queue.get_job(session, job.id)
    assert current.job_status == "running" and current.attempts == 2 and current.result is None
    assert current.current_step == "Processing" and current.progress == 0
    assert queue.complete(session, fresh, {"ok": 1}).job_status == "completed"


def test_get_job_of_an_unknown_id_is_not_found(session):
    with pytest.raises(NotFound):
        queue.get_job(session, "00000000-0000-4000-8000-000000000000")


@pytest.mark.parametrize("value", ["", "123", "not-a-uuid", None, 5, "x" * 500])
def test_parse_job_id_refuses_what_is_not_a_uuid(value):
    with pytest.raises(ValidationError):
        queue.parse_job_id(value)


def test_parse_job_id_canonicalises():
    assert queue.parse_job_id("6F9619FF-8B86-4011-B42D-00C04FC964FF") == "6f9619ff-8b86-4011-b42d-00c04fc964ff"
