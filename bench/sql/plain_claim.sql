-- The plain claim, the fixed baseline of `make bench`'s core throughput: the first due job
-- in the claim index's order that nobody holds (one index probe, no fairness), turned
-- running under a fresh lease with its status event, as the queue's named claim did on
-- 2026-12-05 (claim_named_job.sql with parts/start_attempt.sql).
--
-- Frozen on purpose: never edit it to follow the queue's own SQL. A baseline that runs the
-- code under test moves with it (an ideal that ran the fair claim once hid a 30 % drop);
-- this one does not, so a costlier claim or completion in the queue shows as a lower ratio.
-- Only a schema change it cannot run on (tests/test_bench_baseline.py) is a reason to touch it.
WITH next AS (
    SELECT id FROM jobs
    WHERE job_status = 'queued' AND run_at <= now()
    ORDER BY tenant, priority DESC, run_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE jobs SET
        job_status = 'running',
        attempts = jobs.attempts + 1,
        worker_token = gen_random_uuid(),
        processed_at = now(),
        last_heartbeat = now(),
        current_step = 'Processing',
        last_event_seq = jobs.last_event_seq + 1,
        updated_at = now()
    FROM next
    WHERE jobs.id = next.id
    RETURNING jobs.*
), event AS (
    INSERT INTO job_events (job_id, seq, kind, data)
    SELECT id, last_event_seq, 'status',
           jsonb_build_object('jobStatus', job_status, 'currentStep', current_step,
                              'attempts', attempts)
    FROM claimed
)
SELECT * FROM claimed
