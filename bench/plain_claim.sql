-- The bench's plain claim: the first due queued job in the claim index's order, with no
-- fairness at all (one index probe). The same update, lease and event as the real claim,
-- so that the two ideals differ by the fair choice alone.
WITH next AS (
    SELECT id FROM jobs
    WHERE job_status = 'queued' AND run_at <= now()
    ORDER BY tenant, priority DESC, run_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), claimed AS (
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
