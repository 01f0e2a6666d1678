-- claim, for a Cloud Task that names its job: only if that job is queued and due.
WITH next AS (
    SELECT id FROM jobs
    WHERE id = CAST(:id AS uuid) AND job_status = 'queued' AND run_at <= now()
    FOR UPDATE SKIP LOCKED
),
-- include: parts/start_attempt.sql
SELECT * FROM claimed
