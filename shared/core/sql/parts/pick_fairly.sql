-- The fair pick among `heads` (id, tenant, priority, run_at: each tenant's first due job, held
-- FOR UPDATE SKIP LOCKED): the tenant with the fewest running jobs, then the one served longest
-- ago, then priority, run_at, id. With one head there is nobody to be fair to, and PostgreSQL
-- runs a CASE branch's subquery only when the branch is taken: the probes never run
-- (tests/test_fair_claim_cost.py). Included by the next-job claims after their `heads`.
contested AS (
    SELECT count(*) > 1 AS choice FROM heads
), next AS (
    SELECT heads.id FROM heads CROSS JOIN contested
    ORDER BY
        CASE WHEN contested.choice THEN
            (SELECT count(*) FROM jobs WHERE jobs.tenant = heads.tenant AND jobs.job_status = 'running')
        END,
        CASE WHEN contested.choice THEN
            (SELECT max(jobs.processed_at) FROM jobs
             WHERE jobs.tenant = heads.tenant AND jobs.processed_at IS NOT NULL)
        END NULLS FIRST,
        heads.priority DESC, heads.run_at, heads.id
    LIMIT 1
