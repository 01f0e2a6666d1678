"""Terraform itself evaluates, plans, applies and re-plans the whole of infra/ offline, against the
stand-in providers in local/tfstandin (generated from the providers' published schemas), in each
configuration a user is likely to deploy; and each planted defect fails `make plan-offline`'s
command with Terraform's own error.

What a clean run proves and what it cannot: docs/deploying.md, "What the offline run proves".
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from local.tfstandin import offline

REPO = Path(__file__).resolve().parent.parent
INFRA = REPO / "infra"
EXAMPLE = INFRA / "terraform.tfvars.example"

needs_terraform = pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
pytestmark = needs_terraform

# Each step adds one setting to the previous ones, as an operator turns features on in turn (each
# from nothing would cost a full run each; the last step is every one of them at once).
CONFIGURATIONS = [
    ("tenants", ['api_tokens={acme="a-long-random-token-of-the-acme-tenant"}']),
    ("alert email", ["alert_email=ops@example.com"]),
    ("tracing", ["tracing=true"]),
    ("state bucket", ["state_bucket=my-project-jobqueue-tfstate"]),
    ("bigger tier", ["db_tier=db-custom-2-7680", "max_instances={enqueue=4,process=10,status=2,cancel=2,sweep=1}"]),
]


def working_copy(tmp_path: Path, infra: Path = INFRA) -> tuple[offline.Run, Path]:
    folder = offline.copy_infra(infra, tmp_path)
    return offline.Run(folder, tmp_path, echo=False), offline.stand_in_bundles(tmp_path)


def test_the_example_plans_applies_and_replans_clean_then_each_setting_in_turn(tmp_path):
    run, bundles = working_copy(tmp_path)
    started = time.monotonic()
    offline.plan_apply_replan(run, offline.variables(EXAMPLE, [], bundles))
    print(f"example from nothing (init, validate, plan, apply, plan): {time.monotonic() - started:.1f} s")
    settings: list[str] = []
    for name, values in CONFIGURATIONS:
        settings += values
        started = time.monotonic()
        var_args = offline.variables(EXAMPLE, settings, bundles)
        run("plan", "-input=false", "-no-color", "-out=.tfplan", *var_args)
        run("apply", "-input=false", "-no-color", ".tfplan")
        second = run("plan", "-input=false", "-no-color", "-detailed-exitcode", *var_args, ok_codes=(0, 2))
        assert second.returncode == 0, f"after turning on {name}, a second plan still changes:\n{second.stdout}"
        print(f"+ {name} (plan, apply, plan): {time.monotonic() - started:.1f} s")
    # The settings reached what they govern (not just a plan that ignores them).
    state = run("state", "list").stdout.split()
    assert 'google_secret_manager_secret.secret["API_TOKENS"]' in state
    assert "google_monitoring_notification_channel.email[0]" in state
    assert "google_project_service.telemetry[0]" in state
    assert "google_storage_bucket.state[0]" in state


def run_command(infra: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`make plan-offline INFRA_DIR=infra`'s command, as a user runs it."""
    command = [sys.executable, "-m", "local.tfstandin.offline", "--infra", str(infra), "--quiet", *extra]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, env=env)


# (what, file, old text, new text, what Terraform says)
PLANTED = [
    (
        "a sensitive value in for_each",
        "secrets.tf",
        'local.has_tenants ? ["API_TOKENS"]',
        'length(var.api_tokens) > 0 ? ["API_TOKENS"]',
        "has a sensitive value",
    ),
    (
        "a nested block written as an attribute",
        "tasks.tf",
        "  retry_config {",
        "  retry_config = {",
        "Unsupported argument",
    ),
    (
        "an argument of the wrong type",
        "tasks.tf",
        "max_dispatches_per_second = 50",
        "max_dispatches_per_second = [50]",
        "Incorrect attribute value type",
    ),
    (
        "a missing required argument",
        "database.tf",
        '  name     = "jobs"\n  instance = google_sql_database_instance.main.name\n',
        '  name     = "jobs"\n',
        "Missing required argument",
    ),
    ("an unknown argument", "scheduler.tf", "  time_zone        =", "  timezone         =", "Unsupported argument"),
    (
        "for_each keys unknown until apply",
        "iam.tf",
        "for_each = toset(local.task_pushers)\n\n  name     = google_cloud_tasks_queue.jobs.name",
        "for_each = toset([for n in local.task_pushers : google_service_account.fn[n].email])\n\n"
        "  name     = google_cloud_tasks_queue.jobs.name",
        "Invalid for_each argument",
    ),
    (
        "a dependency cycle",
        "iam.tf",
        '  display_name = "jobqueue Scheduler and Cloud Tasks invoker"\n',
        '  display_name = "jobqueue Scheduler and Cloud Tasks invoker"\n'
        '  description  = google_cloud_scheduler_job.tick["sweep"].id\n',
        "Cycle:",
    ),
    (
        "a violated precondition (the connection budget)",
        "limits.tf",
        "      listeners   = 1 # the LISTEN connection that brings cancels",
        "      listeners   = 9 # the LISTEN connection that brings cancels",
        "The database connection budget does not fit",
    ),
    (
        "an alert policy created within minutes of its metric",
        "monitoring.tf",
        "depends_on = [google_project_service.api, time_sleep.metrics_visible]",
        "depends_on = [google_project_service.api, google_logging_metric.counter, google_logging_metric.distribution]",
        "If a metric was created recently, it could take up to 10 minutes",
    ),
]


@pytest.mark.parametrize(("what", "file", "old", "new", "expected"), PLANTED, ids=[p[0] for p in PLANTED])
def test_a_planted_defect_fails_plan_offline_with_terraforms_error(tmp_path, what, file, old, new, expected):
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy, ignore=shutil.ignore_patterns(*offline.IGNORED))
    text = (copy / file).read_text()
    assert old in text, f"the patch for {what} no longer applies to infra/{file}"
    (copy / file).write_text(text.replace(old, new))
    done = run_command(copy, "--var", 'api_tokens={acme="a-long-random-token-of-the-acme-tenant"}')
    assert done.returncode != 0, f"{what} went through plan-offline:\n{done.stdout}"
    assert expected in done.stderr, done.stderr


def test_a_failed_create_is_finished_by_the_next_run(tmp_path):
    """A create that fails half-way (STANDIN_FAIL_CREATE) leaves state that a second run completes."""
    run, bundles = working_copy(tmp_path)
    var_args = offline.variables(EXAMPLE, [], bundles)
    run.env["STANDIN_FAIL_CREATE"] = "google_cloud_scheduler_job"
    with pytest.raises(offline.StepFailed, match="STANDIN_FAIL_CREATE"):
        offline.plan_apply_replan(run, var_args)
    assert "google_sql_database_instance.main" in run("state", "list").stdout
    del run.env["STANDIN_FAIL_CREATE"]
    offline.plan_apply_replan(run, var_args)
    assert 'google_cloud_scheduler_job.tick["sweep"]' in run("state", "list").stdout
