-- claim: the next due job, fairly across tenants, so that one tenant's backlog never starves
-- another's. Among the tenants with a due job, the one with the fewest jobs running goes
-- first, then the one served longest ago (never served: first); within a tenant, highest
-- priority, then oldest.
--
-- At the price of a plain claim while one tenant waits: `first` is exactly the plain claim
-- (the first due job in jobs_tenant_claim_idx's order that nobody holds), and the rest looks
-- only at the tenants after its own (a loose index scan: one index probe per tenant, however
-- many jobs each has queued). The tenants before it have every due job held by another claim,
-- so none of theirs could be taken now. When no other tenant waits (a single-tenant
-- deployment, one tenant draining a backlog), that costs one probe that finds nothing, and
-- the fairness probes (each tenant's running count and last claim) are skipped: CASE
-- evaluates its subqueries only when there is a choice to make. No per-tenant state row is
-- written at claim or finish (docs/claim-design.md says why).
--
-- Each probe orders by the whole of jobs_tenant_claim_idx's key, so that no statistics can
-- steer it to another index on tenant: (tenant, idempotency_key) holds the finished jobs
-- too, and a probe over it walks every one of them.
--
-- `heads` (the head of every tenant it weighed, as JSON, with its tenant's running jobs when
-- it counted them: when there was a choice) gives the runner its floors for the hinted claim
-- (claim_next_job_from_floor.sql); reading it changes nothing in what is claimed.
--
-- SKIP LOCKED lets concurrent invocations each take a different job; the CTEs fence the
-- LIMIT so that exactly one row is updated. The same statement bumps attempts and hands
-- out a fresh lease token.
WITH RECURSIVE first AS (
    SELECT id, tenant, priority, run_at FROM jobs
    WHERE job_status = 'queued' AND run_at <= now()
    ORDER BY tenant, priority DESC, run_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), later_tenants AS (
    SELECT (SELECT jobs.tenant FROM jobs
            WHERE jobs.job_status = 'queued' AND jobs.run_at <= now() AND jobs.tenant > first.tenant
            ORDER BY jobs.tenant, jobs.priority DESC, jobs.run_at, jobs.id
            LIMIT 1)
    FROM first
    UNION ALL
    SELECT (SELECT jobs.tenant FROM jobs
            WHERE jobs.job_status = 'queued' AND jobs.run_at <= now() AND jobs.tenant > later_tenants.tenant
            ORDER BY jobs.tenant, jobs.priority DESC, jobs.run_at, jobs.id
            LIMIT 1)
    FROM later_tenants
    WHERE later_tenants.tenant IS NOT NULL
), heads AS (
    SELECT id, tenant, priority, run_at, CAST(NULL AS bigint) AS running FROM first  -- counted if need be
    UNION ALL
    SELECT head.id, later_tenants.tenant, head.priority, head.run_at, NULL
    FROM later_tenants
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at FROM jobs
        WHERE jobs.tenant = later_tenants.tenant AND jobs.job_status = 'queued' AND jobs.run_at <= now()
        ORDER BY priority DESC, run_at, id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) AS head
    WHERE later_tenants.tenant IS NOT NULL
),
-- include: parts/pick_fairly.sql
),
-- include: parts/start_attempt.sql
SELECT claimed.*, (SELECT jsonb_agg(jsonb_build_object('tenant', tenant, 'priority', priority,
                                                       'run_at', run_at, 'id', id, 'running', running))
                   FROM weighed) AS heads
FROM claimed
