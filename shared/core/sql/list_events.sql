-- status stream: the events after a sequence number, live or archived, in order.
SELECT seq, kind, data, created_at FROM job_events
WHERE job_id = CAST(:id AS uuid) AND seq > :after_seq
UNION ALL
SELECT seq, kind, data, created_at FROM job_events_archive
WHERE job_id = CAST(:id AS uuid) AND seq > :after_seq
ORDER BY seq
LIMIT :max_events
