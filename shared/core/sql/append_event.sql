-- log line (or another event a handler reports, such as a preview), fenced by the lease.
WITH updated AS (
    UPDATE jobs SET last_event_seq = last_event_seq + 1
    WHERE id = CAST(:id AS uuid) AND job_status = 'running' AND worker_token = CAST(:token AS uuid)
    RETURNING id, last_event_seq
)
INSERT INTO job_events (job_id, seq, kind, data)
SELECT id, last_event_seq, :kind, CAST(:data AS jsonb)
FROM updated
RETURNING seq
