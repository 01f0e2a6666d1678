"""The fair claim at the price of a plain one: while one tenant waits, the fairness probes are
never run (EXPLAIN ANALYZE says so, which a loaded machine cannot blur); and the shortcut
(the plain claim first, then only the tenants after it) stays fair."""

import re

from shared.core import queue
from shared.core.db import STATEMENTS, open_session
from tests.test_fairness import queue_backlog


def finish_backlog(session, tenant: str, count: int) -> None:
    """`count` jobs of `tenant` that ran and completed, as a drain leaves them, with the planner's
    statistics from when they were all queued (as after a burst of enqueues)."""
    queue_backlog(session, tenant, count)
    session.run_sql("VACUUM ANALYZE jobs")
    session.run_sql(
        "UPDATE jobs SET job_status = 'completed', processed_at = now(), finished_at = now() WHERE tenant = :tenant",
        tenant=tenant,
    )
    session.run_sql("VACUUM jobs")  # a drain's dead index entries are vacuum's, not this check's


def test_the_fairness_probes_are_skipped_while_one_tenant_waits(session, registry):
    finish_backlog(session, "solo", 10)
    queue.enqueue(session, registry, kind="noop", payload={}, tenant="solo")
    sql = "\n".join(line for line in STATEMENTS["claim_next_job"].splitlines() if not line.startswith("--"))
    session.run_sql("BEGIN")
    plan = "\n".join(row[0] for row in session.run_sql("EXPLAIN (ANALYZE) " + sql))
    session.run_sql("ROLLBACK")
    weighed = plan[plan.index("CTE weighed") : plan.index("CTE claimed")]  # each head's running count
    order = plan[plan.index("Sort Key: weighed.running") : plan.index("CTE event")]  # next's ORDER BY: last served
    probes = [
        line
        for part in (weighed, order)
        for line in part[re.search(r"^ +SubPlan", part, re.MULTILINE).start() :].splitlines()
        if "->" in line
    ]
    assert len(probes) >= 4 and all("(never executed)" in line for line in probes), plan


def test_a_tenant_whose_due_jobs_are_all_held_does_not_stop_the_next_tenants_claim(session, registry, database_url):
    first, _ = queue.enqueue(session, registry, kind="noop", payload={}, tenant="aaa")
    later, _ = queue.enqueue(session, registry, kind="noop", payload={}, tenant="zzz")
    holder = open_session(database_url)
    try:
        holder.run_sql("BEGIN")
        holder.run_sql("SELECT id FROM jobs WHERE id = CAST(:id AS uuid) FOR UPDATE", id=first.id)
        assert queue.claim_next(session).id == later.id
        assert queue.claim_next(session) is None  # aaa's job is held: nothing else to take
        holder.run_sql("ROLLBACK")
        assert queue.claim_next(session).id == first.id
    finally:
        holder.close()


def test_with_two_tenants_waiting_the_one_with_fewer_running_goes_first_whatever_their_names(session, registry):
    queue_backlog(session, "aaa", 5)
    busy = queue.claim_next(session)
    assert busy.tenant == "aaa"  # aaa now has one running
    queue.enqueue(session, registry, kind="noop", payload={}, tenant="zzz")
    assert queue.claim_next(session).tenant == "zzz"  # the fast path alone would take aaa's next
