-- claim, hinted, when this instance knows one tenant: the next due job at or after that
-- tenant's floor (docs/claim-design.md, "claim from a remembered floor").
--
-- claim_next_job_from_floor.sql for a single floor, written for it: the floor's key comes as
-- plain parameters, not a JSON list to unpack, and with one tenant there is no fair pick to
-- make and no heads to gather (the claimed job is the tenant's new head: the caller reads its
-- key from the row). One tenant draining its backlog is the common case, and there that
-- statement's extra work cost a tenth of a millisecond a job (docs/claim-design.md).
--
-- The same two probes of jobs_tenant_claim_idx, each a range starting at the floor (the first
-- bounds tenant on both sides for the reason that statement gives): the same priority at or
-- after (run_at, id), then any lower priority. UNION ALL under LIMIT 1 runs the second only
-- when the first finds nothing (each is a subquery: FOR UPDATE may not sit in a UNION's arm).
-- That order is how PostgreSQL runs an Append, not a promise of SQL: a parallel plan could
-- mix the arms, and a statement that locks and writes rows never gets one.
-- tests/test_claim_floor.py holds the order (a lower priority comes after the floor's).
WITH next AS (
    SELECT id FROM (
        SELECT id FROM jobs
        WHERE tenant >= :tenant AND tenant <= :tenant AND job_status = 'queued'
          AND priority = CAST(:priority AS integer)
          AND (run_at, id) >= (CAST(:run_at AS timestamptz), CAST(:id AS uuid))
          AND run_at <= now()
        ORDER BY tenant, priority DESC, run_at, id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) AS same
    UNION ALL
    SELECT id FROM (
        SELECT id FROM jobs
        WHERE tenant = :tenant AND job_status = 'queued' AND priority < CAST(:priority AS integer)
          AND run_at <= now()
        ORDER BY tenant, priority DESC, run_at, id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) AS lower
    LIMIT 1
),
-- include: parts/start_attempt.sql
SELECT * FROM claimed
