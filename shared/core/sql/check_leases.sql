-- The instance's look at all its running jobs at once (one statement, not one per job):
-- which leases are still ours, and which jobs have a cancel requested. A job missing from
-- the answer lost its lease. A read, so that noticing a cancel costs no writes.
SELECT CAST(jobs.id AS text) AS id, jobs.cancel_requested_at IS NOT NULL AS cancel_requested
FROM unnest(CAST(:ids AS uuid[]), CAST(:tokens AS uuid[])) AS mine (id, token)
JOIN jobs ON jobs.id = mine.id AND jobs.worker_token = mine.token
WHERE jobs.job_status = 'running'
