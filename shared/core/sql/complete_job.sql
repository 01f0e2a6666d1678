-- complete: store the result, fenced by the lease so that a zombie cannot overwrite a newer attempt.
WITH done AS (
    UPDATE jobs SET
        job_status = 'completed',
        result = CAST(:result AS jsonb),
        error = NULL,
        progress = 100,
        current_step = 'Complete',
        finished_at = now(),
        worker_token = NULL,
        last_event_seq = last_event_seq + 1,
        updated_at = now()
    WHERE id = CAST(:id AS uuid) AND job_status = 'running' AND worker_token = CAST(:token AS uuid)
    RETURNING *
), event AS (
    INSERT INTO job_events (job_id, seq, kind, data)
    SELECT id, last_event_seq, 'status',
           jsonb_build_object('jobStatus', job_status, 'progress', progress,
                              'currentStep', current_step)
    FROM done
)
SELECT * FROM done
