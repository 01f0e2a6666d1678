-- purge: archived jobs finished longer ago than the archive's retention are deleted for good,
-- with their events, a batch at a time.
WITH old AS (
    SELECT id FROM jobs_archive
    WHERE finished_at < now() - make_interval(days => :archive_retention_days)
    ORDER BY finished_at
    LIMIT :batch_size
    FOR UPDATE SKIP LOCKED
), purged_events AS (
    DELETE FROM job_events_archive USING old WHERE job_events_archive.job_id = old.id
), purged AS (
    DELETE FROM jobs_archive USING old WHERE jobs_archive.id = old.id
    RETURNING jobs_archive.id
)
SELECT count(*) AS purged FROM purged
