-- outbox done: delivered (or handed to Cloud Tasks, which retries it from then on).
-- Fenced by the claim: a drainer whose lease ran out and was taken over changes nothing.
DELETE FROM webhook_outbox
WHERE id = :id AND claim_token = CAST(:claim_token AS uuid)
RETURNING id
