-- heartbeat for every running job of the instance, in one statement, fenced by each lease.
-- A job missing from the answer lost its lease. Ids come sorted, so two statements that
-- touch the same rows lock them in the same order.
UPDATE jobs SET last_heartbeat = now()
FROM unnest(CAST(:ids AS uuid[]), CAST(:tokens AS uuid[])) AS mine (id, token)
WHERE jobs.id = mine.id AND jobs.worker_token = mine.token AND jobs.job_status = 'running'
RETURNING CAST(jobs.id AS text) AS id, jobs.cancel_requested_at IS NOT NULL AS cancel_requested
