-- sweep: due jobs still queued long after their run_at; their Cloud Task may be lost.
SELECT * FROM jobs
WHERE job_status = 'queued'
  AND run_at < now() - make_interval(secs => CAST(:waited_seconds AS double precision))
ORDER BY run_at
LIMIT :batch_size
