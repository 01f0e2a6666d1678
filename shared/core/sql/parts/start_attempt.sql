-- The attempt begins: the job picked as `next` (one id) turns running under a fresh lease
-- (worker_token), and its status event is written. Included by every claim after its `next`;
-- the statement then selects from `claimed`.
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
