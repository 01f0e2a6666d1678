-- claim: the next due job, fairly across tenants, so that one tenant's backlog never starves
-- another's. Among the tenants with a due job, the one with the fewest jobs running goes
-- first, then the one served longest ago (never served: first); within a tenant, highest
-- priority, then oldest. The tenants are found by a loose index scan (one index probe per
-- tenant, however many jobs each has queued), and each tenant's next job, running count
-- and last claim are index probes too: the cost grows with the number of tenants waiting,
-- not with the number of queued jobs.
--
-- SKIP LOCKED lets concurrent invocations each take a different job; the CTEs fence the
-- LIMIT so that exactly one row is updated. The same statement bumps attempts and hands
-- out a fresh lease token.
WITH RECURSIVE waiting_tenants AS (
    (SELECT tenant FROM jobs
     WHERE job_status = 'queued' AND run_at <= now()
     ORDER BY tenant
     LIMIT 1)
    UNION ALL
    SELECT (SELECT jobs.tenant FROM jobs
            WHERE jobs.job_status = 'queued' AND jobs.run_at <= now() AND jobs.tenant > waiting_tenants.tenant
            ORDER BY jobs.tenant
            LIMIT 1)
    FROM waiting_tenants
    WHERE waiting_tenants.tenant IS NOT NULL
), heads AS (
    SELECT head.id, head.priority, head.run_at,
           (SELECT count(*) FROM jobs
            WHERE jobs.tenant = waiting_tenants.tenant AND jobs.job_status = 'running') AS running,
           (SELECT max(jobs.processed_at) FROM jobs
            WHERE jobs.tenant = waiting_tenants.tenant AND jobs.processed_at IS NOT NULL) AS last_served
    FROM waiting_tenants
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at FROM jobs
        WHERE jobs.tenant = waiting_tenants.tenant AND jobs.job_status = 'queued' AND jobs.run_at <= now()
        ORDER BY priority DESC, run_at, id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) AS head
    WHERE waiting_tenants.tenant IS NOT NULL
), next AS (
    SELECT id FROM heads
    ORDER BY running, last_served NULLS FIRST, priority DESC, run_at, id
    LIMIT 1
), claimed AS (
    UPDATE jobs SET
        job_status = 'running',
        attempts = jobs.attempts + 1,
        worker_token = gen_random_uuid(),
        processed_at = now(),
        last_heartbeat = now(),
        current_step = 'Processing',
        last_event_seq = jobs.last_event_seq + 1,
        updated_at = now()
    FROM next
    WHERE jobs.id = next.id
    RETURNING jobs.*
), event AS (
    INSERT INTO job_events (job_id, seq, kind, data)
    SELECT id, last_event_seq, 'status',
           jsonb_build_object('jobStatus', job_status, 'currentStep', current_step,
                              'attempts', attempts)
    FROM claimed
)
SELECT * FROM claimed
