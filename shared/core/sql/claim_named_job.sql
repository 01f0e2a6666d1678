-- claim, for a Cloud Task that names its job: only if that job is queued and due.
WITH next AS (
    SELECT id FROM jobs
    WHERE id = CAST(:id AS uuid) AND job_status = 'queued' AND run_at <= now()
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
