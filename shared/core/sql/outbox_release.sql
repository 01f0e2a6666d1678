-- outbox release: claimed but not tried (the drain ran out of time): due again at once,
-- no attempt counted.
UPDATE webhook_outbox SET next_attempt_at = now(), claim_token = NULL
WHERE id = :id AND claim_token = CAST(:claim_token AS uuid)
