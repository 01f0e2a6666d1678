-- The fair pick among `heads` (id, tenant, priority, run_at: each tenant's first due job,
-- held FOR UPDATE SKIP LOCKED; and running: its tenant's running jobs when the statement
-- already knows them, else NULL): the tenant with the fewest running jobs, then the one served
-- longest ago, then priority, run_at, id. With one head there is nobody to be fair to, and
-- PostgreSQL runs a CASE branch's subquery only when the branch is taken: the probes never run
-- (tests/test_fair_claim_cost.py). A count the head brings (the hinted claim's, which the
-- instance keeps from its last full claim) is not taken again: COALESCE evaluates its second
-- argument only when the first is NULL, and that count is the probe which, while vacuum is held
-- back, walks every job run since (docs/claim-design.md, "running counts from the floors").
-- `weighed` is each head with the count used, for the statement's `heads` answer. Included by
-- the next-job claims after their `heads`.
contested AS (
    SELECT count(*) > 1 AS choice FROM heads
), weighed AS (
    SELECT heads.id, heads.tenant, heads.priority, heads.run_at,
           CASE WHEN contested.choice THEN
               COALESCE(heads.running,
                        (SELECT count(*) FROM jobs WHERE jobs.tenant = heads.tenant AND jobs.job_status = 'running'))
           END AS running
    FROM heads CROSS JOIN contested
), next AS (
    SELECT weighed.id FROM weighed CROSS JOIN contested
    ORDER BY
        weighed.running,
        CASE WHEN contested.choice THEN
            (SELECT max(jobs.processed_at) FROM jobs
             WHERE jobs.tenant = weighed.tenant AND jobs.processed_at IS NOT NULL)
        END NULLS FIRST,
        weighed.priority DESC, weighed.run_at, weighed.id
    LIMIT 1
