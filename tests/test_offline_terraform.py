"""Terraform itself evaluates, plans, applies and re-plans the whole of infra/ offline, against the
stand-in providers in local/tfstandin (generated from the providers' published schemas), in each
configuration a user is likely to deploy; and each planted defect fails `make plan-offline`'s
command with Terraform's own error.

What a clean run proves and what it cannot: docs/deploying.md, "What the offline run proves".
"""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from local.stack import DEV_TOKEN, Stack
from local.tfstandin import generate, offline
from local.tfstandin.attach import attached

REPO = Path(__file__).resolve().parent.parent
INFRA = REPO / "infra"
EXAMPLE = INFRA / "terraform.tfvars.example"

# As tests/test_infra.py: no registry these machines reach ships Terraform 1.9 or newer (the PyPI
# "terraform-binary" packages are 0.11-era or download from HashiCorp), so without it, skip.
needs_terraform = pytest.mark.skipif(
    shutil.which("terraform") is None,
    reason="terraform is not installed, and no reachable registry ships Terraform 1.9+: install it from HashiCorp",
)
pytestmark = needs_terraform

# Each step adds one setting to the previous ones, as an operator turns features on in turn (each
# from nothing would cost a full run each; the last step is every one of them at once).
CONFIGURATIONS = [
    ("tenants", ['api_tokens={acme="a-long-random-token-of-the-acme-tenant"}']),
    ("alert email", ["alert_email=ops@example.com"]),
    ("tracing", ["tracing=true"]),
    ("state bucket", ["state_bucket=my-project-jobqueue-tfstate"]),
    ("gemini writer", ["newsletter_writer=gemini"]),
    ("bigger tier", ["db_tier=db-custom-2-7680", "max_instances={enqueue=4,process=10,status=2,cancel=2,sweep=1}"]),
]


def test_the_stand_in_schemas_cover_every_type_infra_uses():
    """A resource type added to infra/ needs its schema: `python -m local.tfstandin.generate`."""
    for provider, types in generate.infra_types(INFRA).items():
        schema = json.loads((generate.SCHEMAS / f"{provider}.json").read_text())
        for kind, name in sorted(types):
            assert name in schema["resources" if kind == "resource" else "data"], (
                f"{kind} {name} has no stand-in schema: run python -m local.tfstandin.generate"
            )


def working_copy(tmp_path: Path, infra: Path = INFRA) -> tuple[offline.Run, Path]:
    folder = offline.copy_infra(infra, tmp_path)
    return offline.Run(folder, tmp_path, echo=False), offline.stand_in_bundles(tmp_path)


def test_the_example_plans_applies_and_replans_clean_then_each_setting_in_turn(tmp_path):
    run, bundles = working_copy(tmp_path)
    with run.attached():  # the stand-ins start once, not twice per Terraform command
        example_then_each_setting_in_turn(run, bundles)


def example_then_each_setting_in_turn(run: offline.Run, bundles: Path) -> None:
    started = time.monotonic()
    offline.plan_apply_replan(run, offline.variables(EXAMPLE, [], bundles))
    print(f"example from nothing (init, validate, plan, apply, plan): {time.monotonic() - started:.1f} s")
    settings: list[str] = []
    for name, values in CONFIGURATIONS:
        settings += values
        started = time.monotonic()
        var_args = offline.variables(EXAMPLE, settings, bundles)
        # No refresh: the previous step's second plan just refreshed this very state.
        run("plan", "-input=false", "-no-color", "-refresh=false", "-out=.tfplan", *var_args)
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
    assert "google_project_iam_member.writer[0]" in state


def test_attached_stand_ins_serve_every_command_without_the_mirror(tmp_path):
    """The saving the tests count on: with the stand-ins attached, Terraform starts none itself.
    With the mirror's providers gone, init and validate pass only by reattaching."""
    run, _ = working_copy(tmp_path)
    shutil.rmtree(tmp_path / "terraform" / "mirror")
    with pytest.raises(offline.StepFailed, match="init"):
        run("init", "-input=false", "-no-color")
    with run.attached():
        run("init", "-input=false", "-no-color")
        run("validate", "-no-color")


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


class SchedulerStandIn(ThreadingHTTPServer):
    """Cloud Scheduler's jobs.get and jobs.run on loopback: running the job `<prefix>-process`
    POSTs {} to the local stack's process function, as Scheduler does, and records the attempt."""

    def __init__(self, urls: dict[str, str]):
        self.urls, self.jobs = urls, {}
        super().__init__(("127.0.0.1", 0), SchedulerHandler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def run_job(self, job: str) -> None:
        function = job.rsplit("-", 1)[1]
        try:
            answer = httpx.post(self.urls[function], json={}, timeout=60)
            status = {} if answer.status_code < 300 else {"code": 13, "message": f"HTTP {answer.status_code}"}
        except httpx.HTTPError as exc:
            status = {"code": 14, "message": str(exc)}
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.jobs[job] = {"name": job, "lastAttemptTime": now, "status": status}


class SchedulerHandler(BaseHTTPRequestHandler):
    def _answer(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        job = self.path.removeprefix("/v1/")
        self._answer(self.server.jobs.get(job, {"name": job}))

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        job = self.path.removeprefix("/v1/").removesuffix(":run")
        threading.Thread(target=self.server.run_job, args=(job,), daemon=True).start()
        self._answer({"name": job})

    def log_message(self, *args):
        pass


def test_make_deploys_script_end_to_end_and_a_second_run_finishes_a_failed_first(database_url, tmp_path):
    """`make deploy`'s own script (python -m local.deploy apply): bundles, init, plan to a file,
    apply, the state moved to the (stand-in) bucket, then the smoke check against the local
    stack, with Cloud Scheduler on loopback. The first run's apply fails half-way (sweep's
    Scheduler job, STANDIN_FAIL_CREATE); the second, the same command, finishes it."""
    copy = offline.copy_infra(INFRA, tmp_path)
    tfvars = tmp_path / "terraform.tfvars"
    tfvars.write_text(
        f'project_id   = "my-project"\nregion       = "europe-west1"\napi_token    = "{DEV_TOKEN}"\n'
        'state_bucket = "my-project-jobqueue-tfstate"\n'
    )
    env = offline.environment(tmp_path / "terraform", tmp_path / "world.json")
    env.update(GOOGLE_OAUTH_ACCESS_TOKEN="offline-test-token", PYTHONPATH=str(REPO))
    with Stack.on_free_ports(database_url=database_url, scheduler=False, log_dir=tmp_path) as stack:
        scheduler = SchedulerStandIn({name: stack.url(name) for name in ("process", "sweep")})
        command = [sys.executable, "-m", "local.deploy", "apply", "--infra", str(copy), "--var-file", str(tfvars)]
        command += [f"--smoke-url={name}={stack.url(name)}" for name in ("enqueue", "status", "cancel")]
        command += ["--scheduler-api", scheduler.api, "--state-stand-in", str(tmp_path / "buckets")]
        command += ["--smoke-seconds", "60"]
        try:
            with attached({**env, "STANDIN_FAIL_CREATE": "google_cloud_scheduler_job=jobqueue-sweep"}, copy) as failing:
                first = subprocess.run(command, cwd=REPO, env=failing, capture_output=True, text=True, timeout=900)
            assert first.returncode == 1, first.stdout + first.stderr
            assert "STANDIN_FAIL_CREATE" in first.stderr and "`terraform apply` failed" in first.stderr
            made = json.loads((copy / "terraform.tfstate").read_text())["resources"]
            jobs = [i["index_key"] for r in made if r["type"] == "google_cloud_scheduler_job" for i in r["instances"]]
            assert jobs == ["process"], jobs  # the rest of the apply went on; only sweep's job is missing
            with attached(env, copy) as working:
                second = subprocess.run(command, cwd=REPO, env=working, capture_output=True, text=True, timeout=900)
        finally:
            scheduler.shutdown()
            scheduler.server_close()
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Every function answered" in second.stdout
    assert "--state-stand-in: the state bucket gs://my-project-jobqueue-tfstate" in second.stdout
    assert (tmp_path / "buckets" / "my-project-jobqueue-tfstate" / "jobqueue" / "default.tfstate").is_file()
    assert set(scheduler.jobs) == {
        "projects/my-project/locations/europe-west1/jobs/jobqueue-process",
        "projects/my-project/locations/europe-west1/jobs/jobqueue-sweep",
    }
    replan = offline.Run(copy, tmp_path, echo=False)
    replan.env.update(env)
    with replan.attached():
        done = replan("plan", "-input=false", "-no-color", "-detailed-exitcode", f"-var-file={tfvars}", ok_codes=(0, 2))
    assert done.returncode == 0, done.stdout
