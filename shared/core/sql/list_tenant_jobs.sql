-- list: one tenant's jobs after the cursor, newest first, live and archived (a job is in
-- one table or the other). Each half walks its (tenant, created_at DESC, id DESC) index and
-- stops at the page size; the archive half is skipped when only queued or running jobs are
-- wanted (the archive holds finished jobs alone).
(SELECT * FROM jobs
 WHERE tenant = :tenant
   AND (created_at, id) < (CAST(:cursor_at AS timestamptz), CAST(:cursor_id AS uuid))
   AND created_at >= CAST(:created_after AS timestamptz)
   AND created_at < CAST(:created_before AS timestamptz)
   AND job_status = ANY(CAST(:statuses AS text[]))
   AND (CAST(:kind AS text) IS NULL OR kind = :kind)
 ORDER BY created_at DESC, id DESC
 LIMIT :page_size)
UNION ALL
(SELECT * FROM jobs_archive
 WHERE CAST(:search_archive AS boolean)
   AND tenant = :tenant
   AND (created_at, id) < (CAST(:cursor_at AS timestamptz), CAST(:cursor_id AS uuid))
   AND created_at >= CAST(:created_after AS timestamptz)
   AND created_at < CAST(:created_before AS timestamptz)
   AND job_status = ANY(CAST(:statuses AS text[]))
   AND (CAST(:kind AS text) IS NULL OR kind = :kind)
 ORDER BY created_at DESC, id DESC
 LIMIT :page_size)
ORDER BY created_at DESC, id DESC
LIMIT :page_size
