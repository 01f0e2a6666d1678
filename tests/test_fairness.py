"""Fair claiming: one tenant's backlog cannot starve another's. The claim serves the tenant
with the fewest jobs running, then the one served longest ago; priority orders a tenant's
own jobs."""

import threading

from shared.core import queue

BACKLOG = 1000


def queue_backlog(session, tenant: str, count: int, priority: int = 0) -> None:
    """`count` due jobs for `tenant`, all older than anything enqueued after."""
    session.run_sql(
        "INSERT INTO jobs (tenant, kind, priority, current_step, created_at, run_at)"
        " SELECT :tenant, 'noop', :priority, 'Queued', now() - interval '1 hour' + g * interval '1 ms',"
        "        now() - interval '1 hour' + g * interval '1 ms'"
        " FROM generate_series(1, :count) AS g",
        tenant=tenant,
        count=count,
        priority=priority,
    )


def claims_until(session, tenant: str, limit: int = 10) -> int:
    """Claim and complete jobs one at a time; how many claims until `tenant` got one."""
    for number in range(1, limit + 1):
        job = queue.claim_next(session)
        queue.complete(session, queue.Lease.of(job), None)
        if job.tenant == tenant:
            return number
    return limit + 1


def test_one_job_of_a_second_tenant_starts_promptly_behind_a_backlog_of_1000(session, registry):
    queue_backlog(session, "big", BACKLOG)
    small, _ = queue.enqueue(session, registry, kind="noop", payload={}, tenant="small")
    assert claims_until(session, "small") <= 2  # FIFO would take 1,001
    assert queue.get_job(session, small.id).job_status == "completed"


def test_the_check_would_fail_with_the_old_first_in_first_out_order(session, registry):
    queue_backlog(session, "big", BACKLOG)
    queue.enqueue(session, registry, kind="noop", payload={}, tenant="small")
    fifo = "SELECT tenant FROM jobs WHERE job_status = 'queued' ORDER BY priority DESC, run_at, id LIMIT 2"
    assert [row[0] for row in session.run_sql(fifo)] == ["big", "big"]


def test_a_tenant_with_jobs_running_yields_the_next_claim(session, registry):
    queue_backlog(session, "big", BACKLOG)
    running = [queue.claim_next(session) for _ in range(4)]  # four workers busy with the backlog
    assert {job.tenant for job in running} == {"big"}
    queue.enqueue(session, registry, kind="noop", payload={}, tenant="small")
    assert queue.claim_next(session).tenant == "small"


def test_priority_orders_a_tenants_own_jobs_but_cannot_starve_another_tenant(session, registry):
    queue_backlog(session, "loud", 50, priority=100)
    quiet, _ = queue.enqueue(session, registry, kind="noop", payload={}, tenant="quiet")
    urgent, _ = queue.enqueue(session, registry, kind="noop", payload={}, tenant="quiet", priority=5)
    assert claims_until(session, "quiet") <= 2
    assert queue.get_job(session, urgent.id).job_status == "completed"  # quiet's urgent job went first
    assert queue.get_job(session, quiet.id).job_status == "queued"


def test_tenants_take_turns_under_concurrent_claims(pool, registry):
    with pool.session() as session:
        for tenant in ("a", "b", "c"):
            queue_backlog(session, tenant, 200)
    claimed: list[str] = []
    lock = threading.Lock()

    def worker():
        with pool.session() as session:
            for _ in range(10):
                job = queue.claim_next(session)
                with lock:
                    claimed.append(job.tenant)
                queue.complete(session, queue.Lease.of(job), None)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = {tenant: claimed.count(tenant) for tenant in ("a", "b", "c")}
    # A claim cannot see the claims in flight beside it (uncommitted), so one round of three
    # concurrent claims may serve one tenant three times: the spread is not bounded by 3 (a
    # loaded run saw 13, 9 and 8). What holds: once the two others have been served since a
    # tenant's last turn, it is the one served longest ago with the fewest running, and every
    # claim that starts then takes it; with at most 3 claims in flight, a tenant waits at most 5
    # claims, so it gets at least 5 of 30.
    assert len(claimed) == 30 and min(counts.values()) >= 5, counts
    with pool.session() as session:  # and no job was claimed twice
        assert session.run_sql("SELECT count(*) FROM jobs WHERE attempts > 1")[0][0] == 0
