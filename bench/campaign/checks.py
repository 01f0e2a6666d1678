"""The verdict. Each check reads what really happened (the job rows and their events, the
ledger the handlers wrote, what the campaign saw over HTTP) and names what it found wrong.
A check that finds nothing wrong says how much it looked at, so an empty look shows."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass

from bench import ledger

TERMINAL = ("completed", "failed", "cancelled")


@dataclass
class Check:
    name: str
    ok: bool
    looked_at: int
    problems: list[str]

    def to_json(self) -> dict:
        return {"ok": self.ok, "lookedAt": self.looked_at, "problems": self.problems[:20], "count": len(self.problems)}


def _check(name: str, looked_at: int, problems: list[str]) -> Check:
    return Check(name, not problems, looked_at, problems)


def read_jobs(session, ids: list[str]) -> dict[str, dict]:
    rows = session.run_sql(
        "SELECT CAST(id AS text), job_status, attempts, max_attempts, result, cancel_requested_at FROM jobs"
        " WHERE id = ANY(CAST(:ids AS uuid[]))",
        ids=ids,
    )
    names = ("id", "status", "attempts", "max_attempts", "result", "cancel_requested_at")
    return {row[0]: dict(zip(names, row)) for row in rows}


def read_ledger(session) -> dict[str, list[dict]]:
    rows = session.run_sql(
        f"SELECT CAST(job_id AS text), attempt, invocation, event, at FROM {ledger.TABLE} ORDER BY id"
    )
    by_job: dict[str, list[dict]] = defaultdict(list)
    for job_id, attempt, invocation, event, at in rows:
        by_job[job_id].append({"attempt": attempt, "invocation": invocation, "event": event, "at": at})
    return by_job


def read_status_events(session, ids: list[str]) -> dict[str, list[str]]:
    rows = session.run_sql(
        "SELECT CAST(job_id AS text), data->>'jobStatus' FROM job_events"
        " WHERE kind = 'status' AND job_id = ANY(CAST(:ids AS uuid[])) ORDER BY job_id, seq",
        ids=ids,
    )
    by_job: dict[str, list[str]] = defaultdict(list)
    for job_id, status in rows:
        by_job[job_id].append(status)
    return by_job


def _result(job: dict) -> dict:
    result = job["result"]
    return json.loads(result) if isinstance(result, str) else (result or {})


def all_terminal(jobs: dict[str, dict], ids: list[str | None]) -> Check:
    """Every enqueued job is in the table and finished. A missing one is named: an id the
    enqueue answered that the table lacks, an id answered twice, or a planned job that never
    got one (its enqueue did not end with a 202)."""
    problems = [f"{job_id} is still {job['status']}" for job_id, job in jobs.items() if job["status"] not in TERMINAL]
    problems += [
        f"{job_id} was answered 202 but is missing from the table" for job_id in ids if job_id and job_id not in jobs
    ]
    problems += [f"{job_id} was answered to {n} planned jobs" for job_id, n in Counter(ids).items() if job_id and n > 1]
    if unanswered := ids.count(None):
        problems.append(f"{unanswered} planned jobs never got an id from enqueue")
    return _check("every job reached a terminal state", len(jobs), problems)


def completed_by_its_last_attempt(jobs: dict[str, dict], runs: dict[str, list[dict]]) -> Check:
    """A completed job's result came from a run that finished, in the ledger, under the
    job's last attempt: not from a zombie whose lease had gone to a newer attempt."""
    problems, completed = [], [job for job in jobs.values() if job["status"] == "completed"]
    for job in completed:
        invocation = _result(job).get("invocation")
        finished = [r for r in runs.get(job["id"], []) if r["event"] == "finished" and r["invocation"] == invocation]
        if not finished:
            problems.append(f"{job['id']} is completed but no run of it finished in the ledger")
        elif finished[0]["attempt"] != job["attempts"]:
            problems.append(
                f"{job['id']} was completed by attempt {finished[0]['attempt']}, not its last attempt {job['attempts']}"
            )
    return _check("completed only by a run that finished under the job's last lease", len(completed), problems)


def runs_within_attempts(jobs: dict[str, dict], runs: dict[str, list[dict]]) -> Check:
    problems = []
    for job_id, job in jobs.items():
        started = {r["invocation"] for r in runs.get(job_id, []) if r["event"] == "started"}
        if not len(started) <= job["attempts"] <= job["max_attempts"]:
            problems.append(f"{job_id}: {len(started)} runs, {job['attempts']} attempts, at most {job['max_attempts']}")
    return _check("handler runs ≤ attempts ≤ max attempts", len(jobs), problems)


def completions(jobs: dict[str, dict], runs: dict[str, list[dict]]) -> tuple[Check, int]:
    """Handler completions per job: one. Delivery is at-least-once, so a run may finish and
    lose its lease before writing (a frozen or killed instance): each such run is counted
    and must belong to an earlier attempt than the one the queue recorded."""
    problems, exceptions = [], 0
    for job_id, job in jobs.items():
        finished = [r for r in runs.get(job_id, []) if r["event"] == "finished"]
        recorded = _result(job).get("invocation") if job["status"] == "completed" else None
        for run in finished:
            if run["invocation"] == recorded:
                continue
            exceptions += 1
            if run["attempt"] >= job["attempts"] and job["status"] == "completed":
                problems.append(f"{job_id}: attempt {run['attempt']} finished but the queue kept another run")
    return _check("one handler completion per job (earlier lost leases excepted)", len(jobs), problems), exceptions


def cancelled_stay_cancelled(jobs: dict[str, dict], statuses: dict[str, list[str]]) -> Check:
    problems = []
    cancelled = [job_id for job_id, job in jobs.items() if job["status"] == "cancelled"]
    for job_id in cancelled:
        seen = statuses.get(job_id, [])
        if "completed" in seen:
            problems.append(f"{job_id} ended cancelled but was completed on the way")
        if "cancelled" in seen and seen[seen.index("cancelled") + 1 :]:
            problems.append(f"{job_id} changed status after it was cancelled: {seen}")
    for job_id, job in jobs.items():
        if job["cancel_requested_at"] is not None and job["status"] == "failed":
            problems.append(f"{job_id} was asked to cancel but ended failed")
    return _check("cancelled jobs never completed after the cancel", len(cancelled), problems)


def terminal_is_final(statuses: dict[str, list[str]]) -> Check:
    """Once completed, failed or cancelled, a job's status never changes again (a claim
    that ignores the status, or a duplicate delivery that runs a finished job, shows here)."""
    problems = []
    for job_id, seen in statuses.items():
        ended = next((i for i, status in enumerate(seen) if status in TERMINAL), None)
        if ended is not None and seen[ended + 1 :]:
            problems.append(f"{job_id} went on after {seen[ended]}: {seen}")
    return _check("a finished job never changes status again", len(statuses), problems)


def streams_in_order(followers: list) -> Check:
    problems = [
        f"stream of {f.job_id} saw {f.trace[:40]}" for f in followers if f.seqs != list(range(1, len(f.seqs) + 1))
    ]
    # What it saw last (events, reconnects with their Last-Event-ID, refusals) says where it stuck.
    problems += [
        f"stream of {f.job_id} never reached done; last: {f.trace[-12:]}; now in: {f.where() or 'nothing (returned)'}"
        for f in followers
        if not f.finished
    ]
    return _check("every stream saw each event once, in order, across reconnects", len(followers), problems)


def no_server_errors(answers) -> Check:
    looked_at = sum(answers.by_call.values())
    return _check("no HTTP 500 (only 503 with Retry-After)", looked_at, [json.dumps(b) for b in answers.bad])


def no_unhandled_errors(log_lines: list[str]) -> Check:
    """What the campaign did not call itself (a tick's follow-ups, a stream's end) shows only
    in the functions' logs: an unhandled error there is a 500 too."""
    problems = [line[:300] for line in log_lines if '"Unhandled error"' in line or "Traceback" in line]
    return _check("no unhandled error in any function's log", len(log_lines), problems)


def connections_within_budget(peaks: dict[str, int], budget: dict[str, int]) -> Check:
    problems = [
        f"{name} held {count} connections, budget {budget.get(name, 0)}"
        for name, count in peaks.items()
        if count > budget.get(name, 0)
    ]
    return _check("database connections within the budget", len(peaks), problems)
