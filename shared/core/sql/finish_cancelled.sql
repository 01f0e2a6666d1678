-- cancelled: the invocation saw the cancel request and its handler stopped.
WITH done AS (
    UPDATE jobs SET
        job_status = 'cancelled',
        current_step = 'Cancelled',
        finished_at = now(),
        worker_token = NULL,
        last_event_seq = last_event_seq + 1,
        updated_at = now()
    WHERE id = CAST(:id AS uuid) AND job_status = 'running' AND worker_token = CAST(:token AS uuid)
    RETURNING *
), event AS (
    INSERT INTO job_events (job_id, seq, kind, data)
    SELECT id, last_event_seq, 'status',
           jsonb_build_object('jobStatus', job_status, 'currentStep', current_step)
    FROM done
)
SELECT * FROM done
