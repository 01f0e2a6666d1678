-- outbox claim: due deliveries (of one job, or any), leased to this drainer until
-- now + lease_seconds. SKIP LOCKED and the lease keep two drainers off the same row; one
-- that crashes mid-send gives its rows back when the lease ends.
WITH due AS (
    SELECT id FROM webhook_outbox
    WHERE gave_up_at IS NULL AND next_attempt_at <= now()
      AND (CAST(:job_id AS uuid) IS NULL OR job_id = CAST(:job_id AS uuid))
    ORDER BY next_attempt_at, id
    LIMIT :batch_size
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_outbox SET
    next_attempt_at = now() + make_interval(secs => CAST(:lease_seconds AS double precision)),
    claim_token = gen_random_uuid()
FROM due
WHERE webhook_outbox.id = due.id
RETURNING webhook_outbox.*
