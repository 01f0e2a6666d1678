-- outbox prune (sweep): deliveries given up on longer ago than the retention period.
WITH pruned AS (
    DELETE FROM webhook_outbox
    WHERE gave_up_at < now() - make_interval(days => CAST(:retention_days AS integer))
    RETURNING 1
)
SELECT count(*) AS pruned FROM pruned
