-- progress: percent and current step on the row (a sign of life too), and an event.
WITH updated AS (
    UPDATE jobs SET
        progress = COALESCE(CAST(:progress AS smallint), progress),
        current_step = COALESCE(CAST(:step AS text), current_step),
        last_heartbeat = now(),
        last_event_seq = last_event_seq + 1,
        updated_at = now()
    WHERE id = CAST(:id AS uuid) AND job_status = 'running' AND worker_token = CAST(:token AS uuid)
    RETURNING id, last_event_seq, progress, current_step
)
INSERT INTO job_events (job_id, seq, kind, data)
SELECT id, last_event_seq, 'progress',
       jsonb_strip_nulls(jsonb_build_object('progress', progress, 'currentStep', current_step,
                                            'message', CAST(:message AS text)))
FROM updated
RETURNING seq
