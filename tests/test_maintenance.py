"""The maintenance services one by one (shared/core/maintenance/), and the one backoff
formula; sweep's composition of them is tested in test_queue.py and test_outbox.py."""

from __future__ import annotations

import random

from shared.core import backoff, maintenance
from shared.core.maintenance.batches import SWEEP_BATCH, in_batches
from shared.core.maintenance.outbox_pruner import prune_outbox

SEED = 24


def outbox_row(session, gave_up_days_ago: float | None) -> None:
    session.run_sql(
        "INSERT INTO webhook_outbox (job_id, event_type, callback_url, gave_up_at)"
        " VALUES (gen_random_uuid(), 'job.failed', 'https://hooks.example.com/h',"
        " CASE WHEN CAST(:days AS float) IS NULL THEN NULL ELSE now() - make_interval(secs => :days * 86400) END)",
        days=gave_up_days_ago,
    )


def test_the_outbox_pruner_deletes_only_deliveries_given_up_on_before_the_retention(session):
    outbox_row(session, gave_up_days_ago=31)
    outbox_row(session, gave_up_days_ago=29)
    outbox_row(session, gave_up_days_ago=None)  # still being tried
    assert prune_outbox(session, retention_days=30) == 1
    assert prune_outbox(session, retention_days=30) == 0
    assert session.run_sql("SELECT count(*) FROM webhook_outbox")[0][0] == 2


def test_a_sweep_runs_the_pruner_with_the_other_services(session):
    outbox_row(session, gave_up_days_ago=31)
    report = maintenance.sweep(session, stalled_after_seconds=60, retention_days=30)
    assert report.pruned == 1 and report.to_json() == {"requeued": 0, "failed": 0, "cancelled": 0, "archived": 0}


def test_batches_stop_at_the_first_short_one_or_at_the_bound():
    sizes = iter([SWEEP_BATCH, SWEEP_BATCH, 7, SWEEP_BATCH])
    assert in_batches(lambda: next(sizes)) == 2 * SWEEP_BATCH + 7
    assert in_batches(lambda: SWEEP_BATCH, max_batches=3) == 3 * SWEEP_BATCH


def test_backoff_is_between_half_and_all_of_the_doubled_base_and_never_past_the_cap():
    print(f"backoff seed {SEED}")
    rng = random.Random(SEED)
    for attempt in range(1, 40):
        ceiling = min(3600, 30 * 2 ** (attempt - 1))
        delays = [backoff.backoff_seconds(attempt, base=30, cap=3600, rng=rng) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1  # jittered: retries that failed together spread out
