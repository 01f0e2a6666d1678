-- status: the newest status message and preview a job's stream has shown (live or archived
-- events), so that the JSON status tells a poller what the stream tells a follower. Each is
-- one row read backwards along the (job_id, seq) key.
SELECT
    (SELECT message FROM (
        SELECT seq, data->>'message' AS message FROM job_events
        WHERE job_id = CAST(:id AS uuid) AND kind = 'progress' AND data->>'message' IS NOT NULL
        UNION ALL
        SELECT seq, data->>'message' FROM job_events_archive
        WHERE job_id = CAST(:id AS uuid) AND kind = 'progress' AND data->>'message' IS NOT NULL
        ORDER BY seq DESC LIMIT 1
    ) AS newest_message) AS message,
    (SELECT data FROM (
        SELECT seq, data FROM job_events WHERE job_id = CAST(:id AS uuid) AND kind = 'preview'
        UNION ALL
        SELECT seq, data FROM job_events_archive WHERE job_id = CAST(:id AS uuid) AND kind = 'preview'
        ORDER BY seq DESC LIMIT 1
    ) AS newest_preview) AS preview
