-- enqueue in bulk, second half: the jobs that the tenant's idempotency keys already name.
SELECT * FROM jobs WHERE tenant = :tenant AND idempotency_key = ANY(CAST(:idempotency_keys AS text[]))
