-- heartbeat: proof of life, fenced by the lease. No row back means the lease is lost.
UPDATE jobs SET last_heartbeat = now()
WHERE id = CAST(:id AS uuid) AND job_status = 'running' AND worker_token = CAST(:token AS uuid)
RETURNING cancel_requested_at IS NOT NULL AS cancel_requested
