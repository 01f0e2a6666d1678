-- status: the newest status message and preview a job's stream has shown (live or archived
-- events), so that the JSON status tells a poller what the stream tells a follower. A preview
-- is stored as a whole text and then only what is new (shared/core/preview.py): its text is
-- the newest whole one with the appends after it.
WITH events AS (
    SELECT seq, kind, data FROM job_events
    WHERE job_id = CAST(:id AS uuid) AND kind IN ('progress', 'preview')
    UNION ALL
    SELECT seq, kind, data FROM job_events_archive
    WHERE job_id = CAST(:id AS uuid) AND kind IN ('progress', 'preview')
),
newest_whole_preview AS (
    SELECT seq, data FROM events
    WHERE kind = 'preview' AND jsonb_typeof(data->'content') = 'string'
    ORDER BY seq DESC LIMIT 1
)
SELECT
    (SELECT data->>'message' FROM events
     WHERE kind = 'progress' AND data->>'message' IS NOT NULL
     ORDER BY seq DESC LIMIT 1) AS message,
    (SELECT jsonb_build_object(
        'format', whole.data->'format',
        'content', (whole.data->>'content') || coalesce((
            SELECT string_agg(e.data->>'append', '' ORDER BY e.seq) FROM events AS e
            WHERE e.kind = 'preview' AND e.seq > whole.seq AND jsonb_typeof(e.data->'append') = 'string'
        ), ''))
     FROM newest_whole_preview AS whole) AS preview
