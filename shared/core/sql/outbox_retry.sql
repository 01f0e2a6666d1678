-- outbox retry: this attempt failed. Try again after retry_delay_seconds, or give up after
-- max_attempts (the row stays, with its last error, until sweep prunes it).
UPDATE webhook_outbox SET
    attempts = attempts + 1,
    last_error = :error,
    next_attempt_at = now() + make_interval(secs => CAST(:retry_delay_seconds AS double precision)),
    gave_up_at = CASE WHEN attempts + 1 >= :max_attempts THEN now() END,
    claim_token = NULL
WHERE id = :id AND claim_token = CAST(:claim_token AS uuid)
RETURNING *
