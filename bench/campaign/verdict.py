"""The campaign's verdict on a run: every check (bench/campaign/checks.py) over the job rows,
the ledger and what the campaign saw, and the report it writes (build/chaos.json)."""

from __future__ import annotations

import time
from pathlib import Path

from bench.campaign import checks, workload
from bench.campaign.faults import admin_session
from bench.campaign.run import POOL_SIZE, POOLER_POOL_SIZE, PROCESS_INSTANCES, Campaign


def judge(campaign: Campaign, drained_after: float | None, bound: float) -> dict:
    planned, answers, sampler, followers = campaign.planned, campaign.answers, campaign.sampler, campaign.followers
    ids = [job.job_id for job in planned]
    session = admin_session(campaign.url, timeout=60)
    try:
        jobs = checks.read_jobs(session, ids)
        runs = checks.read_ledger(session)
        statuses = checks.read_status_events(session, ids)
    finally:
        session.close()
    completion_check, exceptions = checks.completions(jobs, runs)
    budget = connection_budget(campaign)
    verdict = [
        checks.all_terminal(jobs, ids),
        checks.completed_by_its_last_attempt(jobs, runs),
        checks.runs_within_attempts(jobs, runs),
        completion_check,
        checks.terminal_is_final(statuses),
        checks.cancelled_stay_cancelled(jobs, statuses),
        checks.streams_in_order(followers),
        checks.no_server_errors(answers),
        checks.no_unhandled_errors(_log_lines(campaign.log_dir)),
        checks.connections_within_budget(sampler.peaks(), budget),
    ]
    if drained_after is None:
        verdict.append(
            checks.Check(f"drained within {bound:.0f} s of the last fault", False, len(ids), ["not drained"])
        )
    by_status: dict[str, int] = {}
    for job in jobs.values():
        by_status[job["status"]] = by_status.get(job["status"], 0) + 1
    return {
        "seed": campaign.seed,
        "jobs": len(ids),
        "kinds": {kind: sum(1 for j in planned if j.kind == kind) for kind in workload.MIX},
        "byStatus": by_status,
        "seconds": round(time.monotonic() - campaign.started, 1),
        "faults": _count(f["fault"] for f in campaign.faults.log),
        "duplicateDeliveries": sum(1 for j in planned if j.duplicate),
        "lateDeliveries": sum(1 for j in planned if j.late_copy),
        "handlerRuns": sum(1 for rows in runs.values() for r in rows if r["event"] == "started"),
        "finishedRunsNotRecorded": exceptions,
        "drainedSecondsAfterFaults": drained_after,
        "drainBoundSeconds": bound,
        "streams": {"followed": len(followers), "reconnects": sum(f.reconnects for f in followers)},
        "answers": dict(sorted(answers.by_call.items())),
        "peakConnections": sampler.peaks(),
        "through": "PgBouncer (transaction mode)" if campaign.bouncer is not None else "direct",
        "connectionBudget": budget,
        "checks": {check.name: check.to_json() for check in verdict},
        "passed": all(check.ok for check in verdict),
    }


def connection_budget(campaign: Campaign) -> dict[str, int]:
    """What may be connected to PostgreSQL at once. Direct: each function's pool per instance,
    and one LISTEN connection per listening instance (status's for streams, each process
    instance's for cancels). Through the pooler, the functions' pools are the pooler's
    server connections; the LISTEN connections still go direct."""
    listeners = {"jobqueue-notifier": 1 + PROCESS_INSTANCES}  # one per status and per process instance
    if campaign.bouncer is not None:
        return {"pooler": POOLER_POOL_SIZE, **listeners}
    pools = {f"jobqueue-{name}": POOL_SIZE for name in stack_names()}
    return {**pools, "jobqueue-process": POOL_SIZE * PROCESS_INSTANCES, **listeners}


def stack_names() -> tuple[str, ...]:
    from local.functions import FUNCTIONS  # noqa: PLC0415

    return FUNCTIONS


def _count(items) -> dict[str, int]:
    counted: dict[str, int] = {}
    for item in items:
        counted[item] = counted.get(item, 0) + 1
    return counted


def _log_lines(folder: Path) -> list[str]:
    return [line for path in sorted(folder.glob("*.log")) for line in path.read_text(errors="replace").splitlines()]
