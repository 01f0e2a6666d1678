-- claim, hinted: the next due job, fairly across the tenants this instance knows, each one's
-- scan starting at its floor (docs/claim-design.md, "claim from a remembered floor").
--
-- :floors is a JSON list of {tenant, priority, run_at, id}: per tenant, the key of the last
-- job this instance claimed or saw at the head of that tenant's queue. Everything sorting
-- before it was claimed already; while an old transaction holds vacuum back, those index
-- entries are dead but not removable, and a scan from the start of the tenant would visit the
-- heap for each of them. Starting at the floor reads what a clean claim reads however long the
-- hold lasts. What the floor can miss (a job sorting before it: a higher priority, an earlier
-- runAt, a row a concurrent claim held as its tenant's head and then left) the full claim (claim_next_job.sql) finds: the runner
-- runs it when this finds nothing, and every CLAIM_RESCAN_SECONDS regardless.
--
-- The floor is inclusive (>=). In the index's order (priority DESC, run_at, id) "at or after
-- the floor" is: the same priority at or after (run_at, id), then any lower priority. The two
-- are two probes, so that each is a plain range of jobs_tenant_claim_idx that starts at the
-- floor (a row comparison cannot mix DESC and ASC columns, and one probe with an OR would
-- walk the dead entries before the floor as a filter); the second runs only when the first
-- finds nothing (its `same.id IS NULL` is a one-time filter).
--
-- The first probe says `tenant >= x AND tenant <= x`, not `tenant = x`: with an equality on
-- tenant and priority the order left to provide is (run_at, id), and the planner may then
-- take jobs_waiting_idx (run_at), whose scan from the floor's run_at walks every tenant's
-- jobs. Bounded, the tenant stays in the order, and only jobs_tenant_claim_idx provides it.
--
-- The fairness between the heads is the full claim's (the fewest running, then served longest
-- ago, probes skipped when only one tenant has a head), and so are the update and its event,
-- with one difference: a floor may bring its tenant's running jobs as the instance counts them
-- (the last full claim's count, plus the instance's own claims since), and then that tenant's
-- jobs are not counted again. The count is the probe that no floor can shorten: while vacuum
-- is held back it walks every job run since (docs/claim-design.md, "running counts from the
-- floors"). `heads` (every head seen, as JSON) moves the instance's floors up to them.
WITH floors AS (
    SELECT tenant, priority, run_at, id, running
    FROM jsonb_to_recordset(CAST(:floors AS jsonb))
         AS floor (tenant text, priority integer, run_at timestamptz, id uuid, running bigint)
), heads AS (
    SELECT COALESCE(same.id, lower.id) AS id, floors.tenant,
           COALESCE(same.priority, lower.priority) AS priority, COALESCE(same.run_at, lower.run_at) AS run_at,
           floors.running
    FROM floors
    LEFT JOIN LATERAL (
        SELECT jobs.id, jobs.priority, jobs.run_at FROM jobs
        WHERE jobs.tenant >= floors.tenant AND jobs.tenant <= floors.tenant AND jobs.job_status = 'queued'
          AND jobs.priority = floors.priority AND (jobs.run_at, jobs.id) >= (floors.run_at, floors.id)
          AND jobs.run_at <= now()
        ORDER BY jobs.tenant, jobs.priority DESC, jobs.run_at, jobs.id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) AS same ON true
    LEFT JOIN LATERAL (
        SELECT jobs.id, jobs.priority, jobs.run_at FROM jobs
        WHERE same.id IS NULL
          AND jobs.tenant = floors.tenant AND jobs.job_status = 'queued' AND jobs.priority < floors.priority
          AND jobs.run_at <= now()
        ORDER BY jobs.tenant, jobs.priority DESC, jobs.run_at, jobs.id
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) AS lower ON true
    WHERE same.id IS NOT NULL OR lower.id IS NOT NULL
),
-- include: parts/pick_fairly.sql
),
-- include: parts/start_attempt.sql
SELECT claimed.*, (SELECT jsonb_agg(jsonb_build_object('tenant', tenant, 'priority', priority,
                                                       'run_at', run_at, 'id', id, 'running', running))
                   FROM weighed) AS heads
FROM claimed
