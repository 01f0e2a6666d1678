-- gauges: what the queue holds right now (sweep logs them each tick; the status function's
-- metrics view answers with them). Two scans, each over the partial index of its status
-- (claim: queued, stalled: running), so the finished rows, nearly all of the table, are
-- never read. An age is 0 when no job has one. A NULL tenant reads all.
WITH queued AS (
    SELECT count(*) FILTER (WHERE run_at <= now()) AS due,
           count(*) FILTER (WHERE run_at > now()) AS scheduled,
           min(run_at) FILTER (WHERE run_at <= now()) AS oldest_run_at
    FROM jobs
    WHERE job_status = 'queued' AND (CAST(:tenant AS text) IS NULL OR tenant = CAST(:tenant AS text))
), running AS (
    SELECT count(*) AS running, min(last_heartbeat) AS oldest_heartbeat
    FROM jobs
    WHERE job_status = 'running' AND (CAST(:tenant AS text) IS NULL OR tenant = CAST(:tenant AS text))
)
SELECT
    queued.due AS queued,
    queued.scheduled,
    running.running,
    COALESCE(EXTRACT(EPOCH FROM now() - queued.oldest_run_at), 0)::double precision AS oldest_queued_age_seconds,
    COALESCE(EXTRACT(EPOCH FROM now() - running.oldest_heartbeat), 0)::double precision AS oldest_heartbeat_age_seconds
FROM queued, running
