-- list, for the admin token: every tenant's jobs after the cursor, newest first, live and
-- archived; as list_tenant_jobs, over the (created_at DESC, id DESC) indexes.
(SELECT * FROM jobs
 WHERE (created_at, id) < (CAST(:cursor_at AS timestamptz), CAST(:cursor_id AS uuid))
   AND created_at >= CAST(:created_after AS timestamptz)
   AND created_at < CAST(:created_before AS timestamptz)
   AND job_status = ANY(CAST(:statuses AS text[]))
   AND (CAST(:kind AS text) IS NULL OR kind = :kind)
 ORDER BY created_at DESC, id DESC
 LIMIT :page_size)
UNION ALL
(SELECT * FROM jobs_archive
 WHERE CAST(:search_archive AS boolean)
   AND (created_at, id) < (CAST(:cursor_at AS timestamptz), CAST(:cursor_id AS uuid))
   AND created_at >= CAST(:created_after AS timestamptz)
   AND created_at < CAST(:created_before AS timestamptz)
   AND job_status = ANY(CAST(:statuses AS text[]))
   AND (CAST(:kind AS text) IS NULL OR kind = :kind)
 ORDER BY created_at DESC, id DESC
 LIMIT :page_size)
ORDER BY created_at DESC, id DESC
LIMIT :page_size
