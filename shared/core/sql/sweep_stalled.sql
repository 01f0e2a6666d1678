-- sweep: running jobs whose heartbeat stopped. A requested cancel wins (never requeued);
-- otherwise requeue while attempts remain, else fail. SKIP LOCKED leaves alone a job whose
-- invocation is finishing it right now.
WITH stalled AS (
    SELECT id FROM jobs
    WHERE job_status = 'running'
      AND last_heartbeat < now() - make_interval(secs => CAST(:stalled_after_seconds AS double precision))
    ORDER BY last_heartbeat
    LIMIT :batch_size
    FOR UPDATE SKIP LOCKED
), swept AS (
    UPDATE jobs SET
        job_status = CASE
            WHEN jobs.cancel_requested_at IS NOT NULL THEN 'cancelled'
            WHEN jobs.attempts < jobs.max_attempts THEN 'queued'
            ELSE 'failed' END,
        current_step = CASE
            WHEN jobs.cancel_requested_at IS NOT NULL THEN 'Cancelled'
            WHEN jobs.attempts < jobs.max_attempts THEN 'Queued'
            ELSE jobs.current_step END,
        error = CASE
            WHEN jobs.cancel_requested_at IS NOT NULL THEN jobs.error
            ELSE 'Job processor stopped responding' END,
        run_at = CASE
            WHEN jobs.cancel_requested_at IS NULL AND jobs.attempts < jobs.max_attempts THEN now()
            ELSE jobs.run_at END,
        finished_at = CASE
            WHEN jobs.cancel_requested_at IS NULL AND jobs.attempts < jobs.max_attempts THEN NULL
            ELSE now() END,
        worker_token = NULL,
        last_event_seq = jobs.last_event_seq + 1,
        updated_at = now()
    FROM stalled
    WHERE jobs.id = stalled.id
    RETURNING jobs.*
), event AS (
    INSERT INTO job_events (job_id, seq, kind, data)
    SELECT id, last_event_seq, 'status',
           jsonb_strip_nulls(jsonb_build_object('jobStatus', job_status,
                                                'currentStep', current_step, 'error', error))
    FROM swept
)
SELECT * FROM swept
