-- recent figures, by kind: the jobs that finished in the last :window_seconds, counted by
-- status, with percentiles of their wait (due to started, the last attempt's) and their run
-- time (started to finished, the last attempt's). The same figures the dashboard draws from
-- the log-based metrics, read from the table so that they can be seen without Google Cloud.
SELECT
    kind,
    count(*) FILTER (WHERE job_status = 'completed') AS completed,
    count(*) FILTER (WHERE job_status = 'failed') AS failed,
    count(*) FILTER (WHERE job_status = 'cancelled') AS cancelled,
    percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
        ORDER BY EXTRACT(EPOCH FROM processed_at - run_at)::double precision
    ) FILTER (WHERE processed_at IS NOT NULL) AS wait_seconds,
    percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (
        ORDER BY EXTRACT(EPOCH FROM finished_at - processed_at)::double precision
    ) FILTER (WHERE processed_at IS NOT NULL) AS run_seconds
FROM jobs
WHERE job_status IN ('completed', 'failed', 'cancelled')
  AND finished_at >= now() - make_interval(secs => CAST(:window_seconds AS double precision))
  AND (CAST(:tenant AS text) IS NULL OR tenant = CAST(:tenant AS text))
GROUP BY kind
ORDER BY kind
