-- retention: finished jobs older than the retention period move, with their events, to the
-- archive tables, a batch at a time. The status endpoint still finds them there.
WITH old AS (
    SELECT id FROM jobs
    WHERE job_status IN ('completed', 'failed', 'cancelled')
      AND finished_at < now() - make_interval(days => :retention_days)
    ORDER BY finished_at
    LIMIT :batch_size
    FOR UPDATE SKIP LOCKED
), archived_events AS (
    INSERT INTO job_events_archive
    SELECT job_events.* FROM job_events JOIN old ON job_events.job_id = old.id
), removed AS (
    DELETE FROM jobs USING old WHERE jobs.id = old.id
    RETURNING jobs.*
), archived AS (
    INSERT INTO jobs_archive SELECT * FROM removed
    RETURNING id
)
SELECT count(*) AS archived FROM archived
