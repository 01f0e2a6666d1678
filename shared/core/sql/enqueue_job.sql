-- enqueue: a new queued job. A key the tenant used before inserts nothing (the caller then
-- reads the existing job). The first event, seq 1, records the queued state (and, for a
-- re-run, the job it repeats).
WITH inserted AS (
    INSERT INTO jobs (tenant, kind, payload, priority, run_at, max_attempts, idempotency_key,
                      callback_url, rerun_of, current_step, last_event_seq)
    VALUES (:tenant, :kind, CAST(:payload AS jsonb), :priority,
            COALESCE(CAST(:run_at AS timestamptz), now()), :max_attempts,
            CAST(:idempotency_key AS text), CAST(:callback_url AS text), CAST(:rerun_of AS uuid),
            'Queued', 1)
    ON CONFLICT (tenant, idempotency_key) DO NOTHING
    RETURNING *
), event AS (
    INSERT INTO job_events (job_id, seq, kind, data)
    SELECT id, 1, 'status', jsonb_strip_nulls(jsonb_build_object(
        'jobStatus', job_status, 'currentStep', current_step, 'rerunOf', rerun_of))
    FROM inserted
)
SELECT * FROM inserted
