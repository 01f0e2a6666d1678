-- enqueue, second half: the job that the tenant's idempotency key already names.
SELECT * FROM jobs WHERE tenant = :tenant AND idempotency_key = :idempotency_key
