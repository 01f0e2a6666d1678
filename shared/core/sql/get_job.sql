-- status: one job by id, live or archived.
SELECT * FROM jobs WHERE id = CAST(:id AS uuid)
UNION ALL
SELECT * FROM jobs_archive WHERE id = CAST(:id AS uuid)
LIMIT 1
