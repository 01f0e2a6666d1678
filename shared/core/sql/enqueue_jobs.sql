-- enqueue, in bulk: many queued jobs in one statement, each with its first event (seq 1). The
-- caller names each job's id (random, from the caller's CSPRNG), so that it can match the
-- rows returned to the jobs it asked for. A job whose key the tenant used before, or that
-- repeats a key earlier in the same list, inserts nothing: the caller then reads that job.
-- One row comes back, with only what the caller cannot know: which of its ids were inserted
-- (as one text: a thousand rows, or an array of uuids, cost the client more to parse than the
-- insert costs the server) and the transaction's time, every inserted job's created_at (and its
-- run_at when it names none). The rest of each job is the request and the values written here.
WITH requested AS (
    SELECT * FROM jsonb_to_recordset(CAST(:jobs AS jsonb)) AS requested (
        position integer, id uuid, kind text, payload jsonb, priority integer, run_at timestamptz,
        max_attempts integer, idempotency_key text, callback_url text)
), inserted AS (
    INSERT INTO jobs (id, tenant, kind, payload, priority, run_at, max_attempts, idempotency_key,
                      callback_url, traceparent, current_step, last_event_seq)
    SELECT id, :tenant, kind, payload, priority, COALESCE(run_at, now()), max_attempts, idempotency_key,
           callback_url, CAST(:traceparent AS text), 'Queued', 1
    FROM requested
    ORDER BY position
    ON CONFLICT (tenant, idempotency_key) DO NOTHING
    RETURNING *
), event AS (
    INSERT INTO job_events (job_id, seq, kind, data)
    SELECT id, 1, 'status', jsonb_build_object('jobStatus', job_status, 'currentStep', current_step)
    FROM inserted
)
SELECT string_agg(CAST(id AS text), ',') AS ids, now() AS created_at FROM inserted
