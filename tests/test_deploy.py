"""make deploy, offline and on loopback only: every credential form the provider accepts is
found (the metadata server through a stand-in on 127.0.0.1); Terraform plans to a file and
applies that plan with no terminal, where `terraform apply -input=false` fails; a Terraform
failure is one line; and the smoke check against a local stack prints the URLs when all five
functions answer, and names the function and the reason when one does not."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from local import deploy, postgres
from local.stack import DEV_TOKEN, FUNCTIONS, Stack
from tests.support import admin_session

REPO = Path(__file__).resolve().parent.parent
needs_terraform = pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")


def no_metadata_server(env) -> bool:
    return False


def closed_metadata_port() -> dict[str, str]:
    """An environment whose metadata server is a loopback port nothing listens on."""
    return {"GCE_METADATA_HOST": f"127.0.0.1:{postgres.free_port()}", "HOME": "/nonexistent"}


# -- credentials ------------------------------------------------------------------------------


def test_each_credential_form_the_provider_accepts_is_found(tmp_path):
    key = tmp_path / "key.json"
    key.write_text('{"type": "service_account"}')
    adc = tmp_path / "gcloud" / "application_default_credentials.json"
    adc.parent.mkdir()
    adc.write_text("{}")
    empty = {"HOME": str(tmp_path / "home")}
    forms = {
        "GOOGLE_CREDENTIALS": {"GOOGLE_CREDENTIALS": key.read_text()},
        "GOOGLE_CLOUD_KEYFILE_JSON": {"GOOGLE_CLOUD_KEYFILE_JSON": str(key)},
        "GOOGLE_APPLICATION_CREDENTIALS": {"GOOGLE_APPLICATION_CREDENTIALS": str(key)},
        "GOOGLE_OAUTH_ACCESS_TOKEN": {"GOOGLE_OAUTH_ACCESS_TOKEN": "ya29.token"},
        "gcloud application-default credentials": {"CLOUDSDK_CONFIG": str(adc.parent)},
    }
    for expected, env in forms.items():
        assert deploy.credential_source({**empty, **env}, no_metadata_server) == expected
    assert (
        deploy.credential_source({**empty, "GOOGLE_CREDENTIALS": str(tmp_path / "missing.json")}, no_metadata_server)
        is None
    )
    assert deploy.credential_source(empty, no_metadata_server) is None
    assert deploy.credential_source(empty, lambda env: True) == "the metadata server"


class MetadataServer(BaseHTTPRequestHandler):
    flavor = "Google"

    def do_GET(self):
        self.send_response(200)
        if self.flavor:
            self.send_header("Metadata-Flavor", self.flavor)
        self.end_headers()
        self.wfile.write(b"instance/\n")

    def log_message(self, *args):
        pass


def serve(handler) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_metadata_server_is_found_only_when_it_answers_as_one():
    real = serve(MetadataServer)
    impostor = serve(type("Impostor", (MetadataServer,), {"flavor": ""}))
    try:
        assert deploy.metadata_server_answers({"GCE_METADATA_HOST": f"127.0.0.1:{real.server_port}"})
        assert not deploy.metadata_server_answers({"GCE_METADATA_HOST": f"127.0.0.1:{impostor.server_port}"})
        assert not deploy.metadata_server_answers(closed_metadata_port())
        env = {"HOME": "/nonexistent", "GCE_METADATA_HOST": f"127.0.0.1:{real.server_port}"}
        assert deploy.credential_source(env, deploy.metadata_server_answers) == "the metadata server"
    finally:
        for server in (real, impostor):
            server.shutdown()
            server.server_close()


def test_missing_credentials_are_named_before_anything_runs():
    found = deploy.problems(closed_metadata_port())
    assert any("no Google credentials" in problem and "GOOGLE_CREDENTIALS" in problem for problem in found)


# -- terraform without a terminal -------------------------------------------------------------

MODULE = """
variable "budget" {
  type = number
}

resource "terraform_data" "deployed" {
  input = var.budget

  lifecycle {
    precondition {
      condition     = var.budget <= 25
      error_message = "budget ${var.budget} is over 25"
    }
  }
}
"""


def run_plan_and_apply(folder: Path, apply: bool = True) -> subprocess.CompletedProcess:
    """plan_and_apply in a process with no terminal: stdin is /dev/null, as in CI."""
    code = f"from pathlib import Path; from local import deploy; deploy.plan_and_apply({apply}, None, Path({str(folder)!r}))"
    return subprocess.run(
        [sys.executable, "-c", code], stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=REPO, timeout=120
    )


def module(tmp_path: Path, budget: int) -> Path:
    folder = tmp_path / "infra"
    folder.mkdir()
    (folder / "main.tf").write_text(MODULE)
    (folder / "terraform.tfvars").write_text(f"budget = {budget}\n")
    return folder


@needs_terraform
def test_deploy_applies_its_saved_plan_without_a_terminal(tmp_path):
    folder = module(tmp_path, 20)
    # What make deploy used to run: Terraform asks for approval and fails on the closed stdin.
    subprocess.run(["terraform", f"-chdir={folder}", "init", "-input=false"], capture_output=True, check=True)
    old = subprocess.run(
        ["terraform", f"-chdir={folder}", "apply", "-input=false", "-var-file=terraform.tfvars"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    assert "error asking for approval" in old.stdout + old.stderr
    done = run_plan_and_apply(folder)
    assert done.returncode == 0, done.stderr
    assert (folder / deploy.PLAN_FILE).exists()
    state = json.loads((folder / "terraform.tfstate").read_text())
    assert [resource["type"] for resource in state["resources"]] == ["terraform_data"]


@needs_terraform
def test_a_terraform_failure_ends_with_one_line_not_a_traceback(tmp_path):
    folder = module(tmp_path, 30)
    done = run_plan_and_apply(folder)
    assert done.returncode != 0
    assert "budget 30 is over 25" in done.stdout + done.stderr  # Terraform's own message
    assert "`terraform plan` failed (exit status 1)" in done.stderr
    assert not (folder / "terraform.tfstate").exists()
    with pytest.raises(
        deploy.DeployError, match=r"^`terraform plan` failed \(exit status 1\): see its messages above$"
    ):
        deploy.plan_and_apply(False, None, folder)


def test_the_state_bucket_becomes_a_gcs_backend():
    text = deploy.backend_text("my-project-jobqueue-tfstate")
    assert 'backend "gcs"' in text and 'bucket = "my-project-jobqueue-tfstate"' in text
    assert deploy.tfvars_value('project_id = "p"\nstate_bucket = "b"\n', "state_bucket") == "b"
    assert deploy.tfvars_value('project_id = "p"\n# state_bucket = "b"\n', "state_bucket") is None


# -- the smoke check ----------------------------------------------------------------------------


def test_the_smoke_check_prints_the_urls_when_all_answer_and_names_the_one_that_does_not(
    admin_url, database_url, tmp_path
):
    with Stack.on_free_ports(database_url=database_url, scheduler=False, log_dir=tmp_path) as stack:
        urls = {name: stack.url(name) for name in FUNCTIONS}
        checks = deploy.smoke_checks(urls, DEV_TOKEN)
        assert deploy.smoke(checks) == {}
        printed = deploy.report(urls, {})
        assert all(url in printed for url in urls.values())

        stack.stop_function("process")
        failures = deploy.smoke(deploy.smoke_checks(urls, DEV_TOKEN))
        assert list(failures) == ["process"] and "ConnectError" in failures["process"]
        with pytest.raises(deploy.DeployError, match="process: POST"):
            deploy.report(urls, failures)

        # The database gone: the functions that reach it say so, sweep included.
        admin = admin_session(admin_url)
        admin.run_sql(f"DROP DATABASE {database_url.rsplit('/', 1)[1]} WITH (FORCE)")
        admin.close()
        failures = deploy.smoke(deploy.smoke_checks(urls, DEV_TOKEN))
        assert {"status", "cancel", "sweep"} <= set(failures) and "enqueue" not in failures
        assert "answered 503" in failures["sweep"]


def test_the_smoke_check_retries_what_fails_until_its_window_closes():
    """IAM changes take minutes to reach Cloud Run: a function refused at first is asked again
    until the window closes; one that never answers is reported with its last reason."""
    answers = {"enqueue": ["403 Forbidden", "403 Forbidden", None], "status": ["503"] * 100}

    def caller(check):
        return answers[check.name].pop(0)

    checks = [deploy.Check(name, "GET", f"http://127.0.0.1:1/{name}", (200,), "answers") for name in answers]
    callers = dict.fromkeys(answers, caller)
    assert deploy.smoke(checks, callers, window=0) == {"enqueue": "403 Forbidden", "status": "503"}
    answers["enqueue"][:] = ["403 Forbidden", None]
    assert deploy.smoke(checks, callers, window=2, pause=0.05) == {"status": "503"}
    assert answers["enqueue"] == []  # asked again, and answered
