-- fail: while attempts remain (and the error is retryable), back to queued at a later
-- run_at (the caller picks the backoff); otherwise failed for good. A job whose cancel was
-- requested ends cancelled whatever its handler raised: the person asked it to stop.
-- One statement decides, fenced by the lease.
WITH target AS (
    SELECT id, cancel_requested_at IS NOT NULL AS cancel,
           cancel_requested_at IS NULL AND CAST(:retryable AS boolean) AND attempts < max_attempts AS retry
    FROM jobs
    WHERE id = CAST(:id AS uuid) AND job_status = 'running' AND worker_token = CAST(:token AS uuid)
    FOR UPDATE
), failed AS (
    UPDATE jobs SET
        job_status = CASE WHEN target.cancel THEN 'cancelled' WHEN target.retry THEN 'queued' ELSE 'failed' END,
        run_at = CASE WHEN target.retry
                      THEN now() + make_interval(secs => CAST(:retry_delay_seconds AS double precision))
                      ELSE jobs.run_at END,
        finished_at = CASE WHEN target.retry THEN NULL ELSE now() END,
        current_step = CASE WHEN target.cancel THEN 'Cancelled' WHEN target.retry THEN 'Queued'
                            ELSE jobs.current_step END,
        error = :error,
        worker_token = NULL,
        last_event_seq = jobs.last_event_seq + 1,
        updated_at = now()
    FROM target
    WHERE jobs.id = target.id
    RETURNING jobs.*
), event AS (
    INSERT INTO job_events (job_id, seq, kind, data)
    SELECT id, last_event_seq, 'status',
           jsonb_build_object('jobStatus', job_status, 'currentStep', current_step,
                              'error', error, 'runAt', run_at)
    FROM failed
)
SELECT * FROM failed
