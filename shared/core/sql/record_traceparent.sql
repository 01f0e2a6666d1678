-- traces: remember the trace of the enqueue that made the job. Once: a repeated idempotency
-- key keeps the first enqueue's trace.
UPDATE jobs SET traceparent = :traceparent
WHERE id = CAST(:id AS uuid) AND traceparent IS NULL
RETURNING *
