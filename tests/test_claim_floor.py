"""The remembered floor (shared/core/claimfloor.py): claims start where the instance's last
one left off, so a held-back vacuum does not slow them; a job that sorts before the floor is
still claimed by the next full claim, and none is claimed twice."""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import UTC, datetime, timedelta

import pg8000.native
import pytest

from bench.common import shared_buffers, statement_text
from shared.core import queue
from shared.core.claimfloor import ClaimFloor
from shared.core.db import StatementTimeout, open_session
from shared.core.runner import Runner
from shared.core.settings import Settings
from tests.test_fairness import queue_backlog

DEADLINE_SECONDS = 60.0  # a loaded machine's worst; a passing run takes a fraction of a second


class Clock:
    """A clock the test moves: when the full claim is due is then the test's to say."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def claim_and_complete(floor: ClaimFloor, session) -> queue.Job | None:
    job = floor.claim_next(session)
    if job is not None:
        queue.complete(session, queue.Lease.of(job), None)
        floor.count_end(job.tenant)  # as the runner does
    return job


def test_a_job_sorting_before_the_floor_waits_only_for_the_next_full_claim(session, registry):
    queue_backlog(session, "t", 20)
    clock = Clock()
    floor = ClaimFloor(rescan_seconds=1.0, clock=clock)
    first = [claim_and_complete(floor, session) for _ in range(3)]  # one full claim, then hinted ones
    urgent, _ = queue.enqueue(session, registry, kind="noop", payload={}, tenant="t", priority=5)
    early, _ = queue.enqueue(session, registry, kind="noop", payload={}, tenant="t", run_at="2000-01-01T00:00:00Z")
    # Before the rescan is due, the hinted claim goes on from the floor: both sort before it.
    missed = [claim_and_complete(floor, session) for _ in range(3)]
    assert {job.id for job in first + missed}.isdisjoint({urgent.id, early.id})
    clock.now += 1.0  # the full claim is due: it takes the urgent job and resets the floor to it
    assert claim_and_complete(floor, session).id == urgent.id
    assert claim_and_complete(floor, session).id == early.id  # at or after the new floor


def test_when_the_hinted_claim_finds_nothing_the_full_claim_runs_at_once(session, registry):
    queue_backlog(session, "t", 3)
    floor = ClaimFloor(rescan_seconds=3600.0, clock=Clock())
    assert [claim_and_complete(floor, session) is not None for _ in range(3)] == [True] * 3
    early, _ = queue.enqueue(session, registry, kind="noop", payload={}, tenant="t", run_at="2000-01-01T00:00:00Z")
    assert claim_and_complete(floor, session).id == early.id  # nothing after the floor: the full claim
    assert claim_and_complete(floor, session) is None


class Recorded:
    """A real session that notes the name of each statement it runs."""

    def __init__(self, session):
        self._session, self.names = session, []

    def row(self, name: str, /, **params):
        self.names.append(name)
        return self._session.row(name, **params)

    def __getattr__(self, name: str):
        return getattr(self._session, name)


def test_with_one_tenant_the_hinted_claim_goes_on_to_a_lower_priority_by_itself(session):
    queue_backlog(session, "t", 2, priority=5)
    queue_backlog(session, "t", 3, priority=0)
    floor = ClaimFloor(rescan_seconds=3600.0, clock=Clock())
    recorded = Recorded(session)
    assert [claim_and_complete(floor, recorded).priority for _ in range(5)] == [5, 5, 0, 0, 0]
    claims = [name for name in recorded.names if name.startswith("claim_")]
    # One full claim sets the floor; the rest, the lower priority too, are claims from it.
    assert claims == ["claim_next_job"] + ["claim_next_job_from_one_floor"] * 4, claims


def test_a_runner_claims_a_higher_priority_or_earlier_job_within_the_rescan_period(pool, registry, env, session):
    settings = Settings.from_env({**env, "CLAIM_RESCAN_SECONDS": "0.2"})
    runner = Runner(pool, registry, settings)
    queue_backlog(session, "t", 5000)
    try:
        assert runner.run_next().outcome == "completed"  # the floor is set
        urgent, _ = queue.enqueue(session, registry, kind="noop", payload={}, tenant="t", priority=5)
        early, _ = queue.enqueue(session, registry, kind="noop", payload={}, tenant="t", run_at="2000-01-01T00:00:00Z")
        wanted, ran, deadline = {urgent.id, early.id}, [], time.monotonic() + DEADLINE_SECONDS
        while not wanted <= set(ran) and time.monotonic() < deadline:
            ran.append(runner.run_next().job.id)
        assert wanted <= set(ran), f"not claimed within {DEADLINE_SECONDS} s: {wanted - set(ran)}"
        assert ran.index(urgent.id) < ran.index(early.id)  # the full claim's order: priority first
        # Claimed by a rescan, not because the backlog ran out and the hinted claim found nothing.
        assert session.run_sql("SELECT count(*) FROM jobs WHERE job_status = 'queued'")[0][0] > 0
    finally:
        runner.close()


def test_with_two_tenants_the_hinted_claim_stays_fair(session, registry):
    queue_backlog(session, "big", 200)
    clock = Clock()
    floor = ClaimFloor(rescan_seconds=1.0, clock=clock)
    running = [floor.claim_next(session) for _ in range(3)]  # three workers busy with big's backlog
    assert {job.tenant for job in running} == {"big"}
    small_jobs = [queue.enqueue(session, registry, kind="noop", payload={}, tenant="small")[0] for _ in range(3)]
    assert floor.claim_next(session).tenant == "big"  # small is new to this instance: not among its floors yet
    clock.now += 1.0  # the next full claim sees small
    assert floor.claim_next(session).tenant == "small"  # fewer running
    assert {head["tenant"] for head in floor.floors()} == {"big", "small"}
    # From the floors now: the fewest running first. big 4, small 1: small again, then 2 against 4.
    assert floor.claim_next(session).id == small_jobs[1].id
    assert floor.claim_next(session).id == small_jobs[2].id


def test_between_full_claims_the_instance_counts_the_jobs_it_claims_and_ends(pool, registry, env, session):
    queue_backlog(session, "a", 5)
    queue_backlog(session, "b", 5)
    [[busy]] = session.run_sql("SELECT id FROM jobs WHERE tenant = 'a' ORDER BY run_at LIMIT 1")
    queue.claim_named(session, str(busy))  # a has a job running elsewhere
    settings = Settings.from_env(env)
    runner = Runner(pool, registry, settings, listen=False)
    runner.claim_floor = ClaimFloor(rescan_seconds=3600.0, clock=Clock())  # one full claim, then hinted ones
    try:
        assert runner.run_next().job.tenant == "b"  # the full claim counts: a 1, b 0
        running = lambda: {head["tenant"]: head["running"] for head in runner.claim_floor.floors()}  # noqa: E731
        assert running() == {"a": 1, "b": 0}  # b's job ran and ended
        assert runner.run_next().job.tenant == "b"  # from the instance's counts: b still has none running
        [[named]] = session.run_sql("SELECT id FROM jobs WHERE tenant = 'a' AND job_status = 'queued' LIMIT 1")
        assert runner.run_named(str(named)).job.tenant == "a"
        assert running() == {"a": 1, "b": 0}  # claimed by name, counted, ended, counted off
    finally:
        runner.close()


class FullClaimsFail:
    """A real session whose full claims time out (a hold long enough to pass the statement
    timeout): the instance's counts cannot be renewed."""

    def __init__(self, session):
        self._session = session

    def row(self, name: str, /, **params):
        if name == "claim_next_job":
            raise StatementTimeout()
        return self._session.row(name, **params)

    def __getattr__(self, name: str):
        return getattr(self._session, name)


def test_counts_that_no_full_claim_renewed_for_two_periods_are_counted_again(session):
    queue_backlog(session, "a", 5)
    queue_backlog(session, "b", 5)
    clock = Clock()
    floor = ClaimFloor(rescan_seconds=1.0, clock=clock)
    first = floor.claim_next(session).tenant  # the full claim: first 1 running, the other 0
    other = "b" if first == "a" else "a"
    for row in session.run_sql("SELECT id FROM jobs WHERE tenant = :t AND job_status = 'queued' LIMIT 3", t=other):
        queue.claim_named(session, str(row[0]))  # another instance's: the other has 3 running, unknown here
    failing = FullClaimsFail(session)
    for now in (1.0, 2.0):
        clock.now = now
        with pytest.raises(StatementTimeout):
            floor.claim_next(failing)  # each rescan's full claim fails
    clock.now = 2.5  # hinted, two periods after the last count: the claim counts for itself
    assert {head["running"] for head in floor.floors()} == {None}
    assert floor.claim_next(failing).tenant == first  # 1 running against 3 (the kept counts said 1 against 0)


@pytest.fixture
def floors_per_hinted_claim(monkeypatch) -> list[int]:
    """How many floors each hinted claim of the test started from (1: the one-floor statement)."""
    counts = []
    claim_from_floor = queue.claim_next_from_floor

    def counted(session, floors):
        counts.append(len(floors))
        return claim_from_floor(session, floors)

    monkeypatch.setattr(queue, "claim_next_from_floor", counted)
    return counts


@pytest.mark.parametrize("tenants", ["abc", "a"])  # one tenant: the hinted claim from one floor
def test_no_job_is_claimed_twice_by_two_instances_of_many_threads_while_jobs_keep_coming(
    database_url, registry, tenants, floors_per_hinted_claim
):
    seed = 20261204
    print(f"seed {seed}")
    randomness = random.Random(seed)
    setup = open_session(database_url)
    for tenant in tenants:
        queue_backlog(setup, tenant, 150, priority=randomness.choice((0, 0, 1)))
    instances = [ClaimFloor(rescan_seconds=0.05), ClaimFloor(rescan_seconds=0.05)]
    claimed: list[str] = []
    claimed_lock = threading.Lock()
    stop_enqueueing = threading.Event()

    def worker(floor: ClaimFloor) -> None:
        session = open_session(database_url)
        idle_deadline = None
        try:
            while True:
                job = claim_and_complete(floor, session)
                if job is not None:
                    idle_deadline = None
                    with claimed_lock:
                        claimed.append(job.id)
                elif stop_enqueueing.is_set():
                    # Nothing due: done once the enqueuer stopped and a full claim finds nothing.
                    idle_deadline = idle_deadline or time.monotonic() + 0.5
                    if time.monotonic() > idle_deadline:
                        return
        finally:
            session.close()

    def enqueuer() -> None:
        session = open_session(database_url)
        past = datetime.now(UTC) - timedelta(hours=2)
        try:
            for number in range(150):  # jobs that sort before, at and after the floors
                when = (past + timedelta(seconds=number)).isoformat() if randomness.random() < 0.3 else None
                queue.enqueue(session, registry, kind="noop", payload={}, tenant=randomness.choice(tenants),
                              priority=randomness.choice((0, 0, 1, 2)), run_at=when)  # fmt: skip
        finally:
            stop_enqueueing.set()
            session.close()

    threads = [threading.Thread(target=worker, args=(floor,)) for floor in instances for _ in range(3)]
    threads.append(threading.Thread(target=enqueuer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=DEADLINE_SECONDS * 3)
    assert not any(thread.is_alive() for thread in threads)
    total = setup.run_sql(
        "SELECT count(*), count(*) FILTER (WHERE job_status = 'completed' AND attempts = 1) FROM jobs"
    )
    setup.close()
    jobs = 150 * len(tenants) + 150
    assert len(claimed) == len(set(claimed)) == jobs
    assert total == [[jobs, jobs]]
    if len(tenants) == 1:
        assert floors_per_hinted_claim.count(1) > jobs / 2  # most claims were the one-floor statement's


# -- what a claim reads while an XID is held ---------------------------------------------------


def pages_clean_and_held(session, database_url: str, floor: ClaimFloor, jobs: int = 2500) -> tuple[tuple, tuple]:
    """claim_pages now, and again after `jobs` claims while an idle transaction holds an XID
    (vacuum cannot prune what they leave)."""
    clean = claim_pages(session, floor)
    holder = open_session(database_url)
    try:
        holder.run_sql("BEGIN")
        holder.run_sql("SELECT txid_current()")
        for _ in range(jobs):
            claim_and_complete(floor, session)
        return clean, claim_pages(session, floor)
    finally:
        holder.close()


def claim_pages(session, floor: ClaimFloor) -> tuple[int, int, int]:
    """(pages of the hinted claim from the floors, of the one-floor claim, of the full claim)."""
    floors = floor.floors()
    hinted = shared_buffers(session, statement_text("claim_next_job_from_floor"), floors=json.dumps(floors))
    one = shared_buffers(session, statement_text("claim_next_job_from_one_floor"), **floors[0])
    return hinted, one, shared_buffers(session, statement_text("claim_next_job"))


def test_under_a_held_xid_the_hinted_claim_reads_what_a_clean_claim_reads_and_the_full_claim_more(
    session, database_url
):
    queue_backlog(session, "t", 3000)
    session.run_sql("VACUUM ANALYZE jobs")
    floor = ClaimFloor(rescan_seconds=3600.0, clock=Clock())
    for _ in range(20):
        claim_and_complete(floor, session)
    (clean_hinted, clean_one, clean_full), (held_hinted, held_one, held_full) = pages_clean_and_held(
        session, database_url, floor
    )
    print(f"pages: clean hinted {clean_hinted}, one floor {clean_one}, full {clean_full};"
          f" held hinted {held_hinted}, one floor {held_one}, full {held_full}")  # fmt: skip
    assert held_hinted <= clean_full + 10  # about what a clean claim reads
    assert held_one <= clean_full + 10
    assert held_full > max(2 * held_hinted, clean_full + 40)  # the full claim walks the 2,500 dead entries


def test_with_two_tenants_under_a_held_xid_the_hinted_claim_counts_no_running_jobs(session, database_url):
    """The fair pick's running count walks every job run since the hold began (no floor can
    shorten a count); the hinted claim weighs the counts the instance keeps instead."""
    for tenant in ("a", "b"):
        queue_backlog(session, tenant, 1500)
    session.run_sql("VACUUM ANALYZE jobs")
    floor = ClaimFloor(rescan_seconds=3600.0, clock=Clock())
    tenants = [claim_and_complete(floor, session).tenant for _ in range(20)]
    assert tenants.count("a") == tenants.count("b") == 10  # turn by turn
    assert {head["tenant"]: head["running"] for head in floor.floors()} == {"a": 0, "b": 0}
    (clean_hinted, _, clean_full), (held_hinted, _, held_full) = pages_clean_and_held(session, database_url, floor)
    print(f"pages: clean hinted {clean_hinted}, full {clean_full}; held hinted {held_hinted}, full {held_full}")
    assert held_hinted <= clean_full + 10  # about what a clean claim reads
    assert held_full > max(2 * held_hinted, clean_full + 100)  # the full claim's counts walk the 2,500 jobs run


def test_each_tenants_probe_is_a_range_of_the_claim_index_that_starts_at_its_floor(session):
    for tenant in ("a", "b"):  # two tenants' jobs interleaved in run_at: jobs_waiting_idx tempts the planner
        queue_backlog(session, tenant, 2000)
    session.run_sql("VACUUM ANALYZE jobs")
    floor = ClaimFloor(rescan_seconds=3600.0, clock=Clock())
    for _ in range(6):
        claim_and_complete(floor, session)
    sql = statement_text("claim_next_job_from_floor")
    plan = [row[0] for row in session.run_sql("EXPLAIN " + sql, floors=json.dumps(floor.floors()))]
    starts = [number for number, line in enumerate(plan) if "ROW(run_at, id) >= ROW(floor.run_at, floor.id)" in line]
    assert len(starts) == 1 and "Index Cond" in plan[starts[0]], "\n".join(plan)
    assert "jobs_tenant_claim_idx" in plan[starts[0] - 1], "\n".join(plan)


def test_the_one_floor_claims_probe_is_a_range_of_the_claim_index_that_starts_at_its_floor(session):
    for tenant in ("a", "b"):
        queue_backlog(session, tenant, 2000)
    session.run_sql("VACUUM ANALYZE jobs")
    [[tenant, priority, run_at, job_id]] = session.run_sql(
        "SELECT tenant, priority, run_at, id FROM jobs WHERE tenant = 'a' ORDER BY run_at OFFSET 6 LIMIT 1"
    )
    floor = {"tenant": tenant, "priority": priority, "run_at": run_at.isoformat(), "id": str(job_id)}
    sql, values = pg8000.native.to_statement(statement_text("claim_next_job_from_one_floor"))
    custom = [row[0] for row in session.run_sql("EXPLAIN " + statement_text("claim_next_job_from_one_floor"), **floor)]
    # A named statement, as the runner's sessions prepare it, is planned blind to its values
    # after a few runs: that plan must start at the floor too.
    session.run_sql("PREPARE one_floor AS " + sql)
    session.run_sql("SET plan_cache_mode = force_generic_plan")
    try:
        arguments = ", ".join(f"'{value}'" for value in values(floor))
        generic = [row[0] for row in session.run_sql(f"EXPLAIN EXECUTE one_floor({arguments})")]
    finally:
        session.run_sql("RESET plan_cache_mode")
        session.run_sql("DEALLOCATE one_floor")
    assert "$3" in "\n".join(generic)  # blind to the values indeed
    for plan in (custom, generic):
        starts = [number for number, line in enumerate(plan) if "ROW(run_at, id) >= ROW(" in line]
        assert len(starts) == 1 and "Index Cond" in plan[starts[0]], "\n".join(plan)
        assert "jobs_tenant_claim_idx" in plan[starts[0] - 1], "\n".join(plan)


# -- a hinted claim that ends after a full claim ------------------------------------------------


class PausedAfterHintedClaim:
    """A real session whose hinted claim, once run (and committed), waits for the test before
    its result goes back to the ClaimFloor: the test can then run a full claim in between."""

    def __init__(self, session):
        self._session = session
        self.ran, self.release = threading.Event(), threading.Event()

    def row(self, name: str, /, **params):
        result = self._session.row(name, **params)
        if name == "claim_next_job_from_floor":
            self.ran.set()
            assert self.release.wait(DEADLINE_SECONDS)
        return result

    def __getattr__(self, name: str):
        return getattr(self._session, name)


def floor_of(floor: ClaimFloor, tenant: str) -> dict:
    return {head["tenant"]: head for head in floor.floors()}[tenant]


def test_a_hinted_claim_that_ends_after_a_full_claim_does_not_undo_the_floors_it_reset(session, registry, database_url):
    queue_backlog(session, "a", 20)
    queue_backlog(session, "b", 20)
    for job_id in [row[0] for row in session.run_sql("SELECT id FROM jobs WHERE tenant = 'a' ORDER BY run_at LIMIT 3")]:
        queue.claim_named(session, str(job_id))  # a has 3 running: b is the fairer tenant until it has as many
    clock = Clock()
    floor = ClaimFloor(rescan_seconds=1.0, clock=clock)
    assert floor.claim_next(session).tenant == "b"  # the first claim is a full one: floors a and b
    urgent, _ = queue.enqueue(session, registry, kind="noop", payload={}, tenant="a", priority=5)
    other = open_session(database_url)
    paused = PausedAfterHintedClaim(other)
    worker = threading.Thread(target=floor.claim_next, args=(paused,))
    try:
        worker.start()  # another thread of the instance: a hinted claim from the floors (urgent sorts before a's)
        assert paused.ran.wait(DEADLINE_SECONDS)
        clock.now += 1.0  # the rescan is due: the full claim takes b's head and moves a's floor back to urgent
        assert floor.claim_next(session).tenant == "b"
        assert floor_of(floor, "a")["id"] == urgent.id
    finally:
        paused.release.set()
        worker.join(DEADLINE_SECONDS)
        other.close()
    # The hinted claim that began before the rescan ends now: its heads are older than the rescan's.
    assert floor_of(floor, "a")["id"] == urgent.id, floor.floors()
    # a and b have 3 running each, a was served longest ago: a's next job is the urgent one.
    assert floor.claim_next(session).id == urgent.id
