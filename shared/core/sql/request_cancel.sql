-- cancel: a queued job is cancelled at once; a running one gets a cancel request that its
-- invocation acts on. Returns nothing when there was nothing to change (unknown, finished,
-- or already requested) or the job is another tenant's: the caller reads the job to tell
-- those apart.
WITH target AS (
    SELECT id, job_status FROM jobs
    WHERE id = CAST(:id AS uuid)
      AND (tenant = :tenant OR CAST(:all_tenants AS boolean))
      AND (job_status = 'queued' OR (job_status = 'running' AND cancel_requested_at IS NULL))
    FOR UPDATE
), changed AS (
    UPDATE jobs SET
        job_status = CASE WHEN target.job_status = 'queued' THEN 'cancelled' ELSE jobs.job_status END,
        current_step = CASE WHEN target.job_status = 'queued' THEN 'Cancelled' ELSE jobs.current_step END,
        finished_at = CASE WHEN target.job_status = 'queued' THEN now() ELSE NULL END,
        cancel_requested_at = now(),
        last_event_seq = jobs.last_event_seq + 1,
        updated_at = now()
    FROM target
    WHERE jobs.id = target.id
    RETURNING jobs.*
), event AS (
    INSERT INTO job_events (job_id, seq, kind, data)
    SELECT id, last_event_seq, 'status',
           jsonb_build_object('jobStatus', job_status, 'currentStep', current_step,
                              'cancelRequested', true)
    FROM changed
)
SELECT * FROM changed
