-- The plain completion, the fixed baseline's second statement: the result stored, fenced by
-- the lease, with its status event, as the queue's complete_job.sql did on 2026-12-05.
-- Frozen on purpose, like plain_claim.sql (which says why).
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
