"""The fault campaign's checks can fail: each is shown a small history with the bug it is
there to catch, and a clean one. (The campaign itself runs in `make chaos`, which also runs
it once with a bug planted in a copy of the tree and expects it to fail.)"""

from types import SimpleNamespace

from bench.campaign import checks


def job(job_id, status, attempts=1, max_attempts=3, invocation=None, cancel_requested=False):
    return {
        "id": job_id,
        "status": status,
        "attempts": attempts,
        "max_attempts": max_attempts,
        "result": {"invocation": invocation} if invocation else None,
        "cancel_requested_at": "2026-01-01T00:00:00Z" if cancel_requested else None,
    }


def run(attempt, invocation, *events):
    return [{"attempt": attempt, "invocation": invocation, "event": event, "at": None} for event in events]


def test_a_completion_written_by_a_zombie_attempt_is_caught():
    jobs = {"a": job("a", "completed", attempts=2, invocation="zombie")}
    runs = {"a": run(1, "zombie", "started", "finished") + run(2, "fresh", "started", "finished")}
    assert not checks.completed_by_its_last_attempt(jobs, runs).ok
    runs_ok = {"a": run(1, "zombie", "started", "finished") + run(2, "fresh", "started", "finished")}
    jobs_ok = {"a": job("a", "completed", attempts=2, invocation="fresh")}
    assert checks.completed_by_its_last_attempt(jobs_ok, runs_ok).ok
    check, exceptions = checks.completions(jobs_ok, runs_ok)
    assert check.ok and exceptions == 1  # the zombie's finished run, counted and reported


def test_a_completion_with_no_finished_run_in_the_ledger_is_caught():
    jobs = {"a": job("a", "completed", invocation="ghost")}
    assert not checks.completed_by_its_last_attempt(jobs, {"a": run(1, "real", "started")}).ok


def test_more_runs_than_attempts_or_attempts_past_the_limit_are_caught():
    twice = {"a": job("a", "completed", attempts=1, invocation="x")}
    assert not checks.runs_within_attempts(twice, {"a": run(1, "x", "started") + run(1, "y", "started")}).ok
    over = {"a": job("a", "failed", attempts=4, max_attempts=3)}
    assert not checks.runs_within_attempts(over, {}).ok
    assert checks.runs_within_attempts({"a": job("a", "completed", invocation="x")}, {"a": run(1, "x", "started")}).ok


def test_a_job_that_changes_status_after_it_finished_is_caught():
    assert not checks.terminal_is_final({"a": ["queued", "running", "completed", "running", "completed"]}).ok
    assert checks.terminal_is_final({"a": ["queued", "running", "queued", "running", "completed"]}).ok


def test_a_cancelled_job_that_ran_on_or_a_cancel_that_ended_failed_is_caught():
    jobs = {"a": job("a", "cancelled"), "b": job("b", "failed", cancel_requested=True)}
    found = checks.cancelled_stay_cancelled(jobs, {"a": ["queued", "cancelled", "running", "cancelled"], "b": []})
    assert not found.ok and len(found.problems) == 2


def test_a_stream_with_a_gap_or_a_repeat_is_caught():
    def follower(seqs, finished=True):
        return SimpleNamespace(job_id="a", seqs=seqs, trace=seqs, finished=finished, where=lambda: "")

    assert not checks.streams_in_order([follower([1, 2, 2, 3])]).ok
    assert not checks.streams_in_order([follower([1, 3])]).ok
    assert not checks.streams_in_order([follower([1, 2], finished=False)]).ok
    assert checks.streams_in_order([follower([1, 2, 3])]).ok


def test_a_server_error_or_connections_over_budget_are_caught():
    assert not checks.no_server_errors(SimpleNamespace(by_call={"sweep 500": 1}, bad=[{"status": 500}])).ok
    assert not checks.connections_within_budget({"jobqueue-process": 5}, {"jobqueue-process": 4}).ok
    assert checks.connections_within_budget({"jobqueue-process": 4}, {"jobqueue-process": 4}).ok


def test_a_job_left_running_is_caught():
    assert not checks.all_terminal({"a": job("a", "running")}, ["a"]).ok
    assert checks.all_terminal({}, ["a"]).problems == ["a was answered 202 but is missing from the table"]
    assert checks.all_terminal({"a": job("a", "completed")}, ["a", "a"]).problems == [
        "a was answered to 2 planned jobs"
    ]
    assert checks.all_terminal({"a": job("a", "completed")}, ["a", None]).problems == [
        "1 planned jobs never got an id from enqueue"
    ]
    assert checks.all_terminal({"a": job("a", "completed")}, ["a"]).ok


def test_an_unhandled_error_in_a_function_log_is_caught():
    clean = ['{"severity": "INFO", "message": "Job completed"}']
    assert checks.no_unhandled_errors(clean).ok
    assert not checks.no_unhandled_errors([*clean, '{"severity": "ERROR", "message": "Unhandled error"}']).ok
