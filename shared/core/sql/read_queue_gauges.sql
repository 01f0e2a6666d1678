-- gauges: what the queue holds right now (sweep logs them each tick; the status function's
-- metrics view answers with them). Reads only queued and running rows, which the claim and
-- stalled partial indexes hold. An age is 0 when no job has one. A NULL tenant reads all.
SELECT
    count(*) FILTER (WHERE job_status = 'queued' AND run_at <= now()) AS queued,
    count(*) FILTER (WHERE job_status = 'queued' AND run_at > now()) AS scheduled,
    count(*) FILTER (WHERE job_status = 'running') AS running,
    COALESCE(EXTRACT(EPOCH FROM now() - min(run_at) FILTER (WHERE job_status = 'queued' AND run_at <= now())), 0)
        ::double precision AS oldest_queued_age_seconds,
    COALESCE(EXTRACT(EPOCH FROM now() - min(last_heartbeat) FILTER (WHERE job_status = 'running')), 0)
        ::double precision AS oldest_heartbeat_age_seconds
FROM jobs
WHERE job_status IN ('queued', 'running')
  AND (CAST(:tenant AS text) IS NULL OR tenant = CAST(:tenant AS text))
