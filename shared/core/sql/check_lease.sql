-- The runner's once-a-second look: is the lease still ours, and was a cancel requested?
-- A read, so that noticing a cancel quickly costs no writes.
SELECT cancel_requested_at IS NOT NULL AS cancel_requested
FROM jobs
WHERE id = CAST(:id AS uuid) AND job_status = 'running' AND worker_token = CAST(:token AS uuid)
