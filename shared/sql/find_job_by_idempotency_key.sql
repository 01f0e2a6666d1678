-- enqueue, second half: the job that an idempotency key already names.
SELECT * FROM jobs WHERE idempotency_key = :idempotency_key
