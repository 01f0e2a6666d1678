"""make plan / make deploy: build the bundles, then terraform init, plan to a file, and (deploy)
apply that plan, then call every deployed function and print the URLs only when all answer.

Everything that can be checked is checked first, and every problem is named in one message,
before anything is built or changed: terraform on PATH, Google credentials in any form the
provider accepts, and infra/terraform.tfvars with project_id. Applying a saved plan never
asks for approval, so `make deploy` runs without a terminal (CI, a pipe). A failing Terraform
command ends with one line naming it, after Terraform's own messages, not a traceback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from local.bundle import REPO, build_all

INFRA = REPO / "infra"
TFVARS = INFRA / "terraform.tfvars"
PLAN_FILE = ".tfplan"  # in infra/, git-ignored
BACKEND_FILE = "backend.tf"  # in infra/, written when state_bucket is set; git-ignored
METADATA_HOST = "169.254.169.254"  # a Compute Engine VM's metadata server (GCE_METADATA_HOST overrides it)


class DeployError(Exception):
    """A step failed; its message is the one line the user sees."""


# -- credentials ----------------------------------------------------------------------------


def _adc_file(env: Mapping[str, str]) -> Path:
    config = env.get("CLOUDSDK_CONFIG") or str(Path(env.get("HOME", str(Path.home()))) / ".config" / "gcloud")
    return Path(config) / "application_default_credentials.json"


def metadata_server_answers(env: Mapping[str, str], timeout: float = 0.5) -> bool:
    """Whether a metadata server (a Google Cloud VM, Cloud Shell, Cloud Build) answers, as the
    provider would find it: a short HTTP request that only one answers with Metadata-Flavor."""
    host, _, port = (env.get("GCE_METADATA_HOST") or METADATA_HOST).partition(":")
    try:
        with socket.create_connection((host, int(port or 80)), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(
                f"GET /computeMetadata/v1/ HTTP/1.0\r\nHost: {host}\r\nMetadata-Flavor: Google\r\n\r\n".encode()
            )
            head = conn.recv(4096).decode("latin-1").lower()
    except (OSError, ValueError):
        return False
    return head.startswith("http/") and "metadata-flavor: google" in head


def credential_source(env: Mapping[str, str], probe: Callable[[Mapping[str, str]], bool]) -> str | None:
    """Which credentials the Google provider would use, or None: GOOGLE_CREDENTIALS (a key's
    JSON or a path to it) and its older names, GOOGLE_APPLICATION_CREDENTIALS, an access token,
    gcloud's application-default file, then a metadata server."""
    for name in ("GOOGLE_CREDENTIALS", "GOOGLE_CLOUD_KEYFILE_JSON", "GCLOUD_KEYFILE_JSON"):
        value = env.get(name, "").strip()
        if value.startswith("{") or (value and Path(value).is_file()):
            return name
    path = env.get("GOOGLE_APPLICATION_CREDENTIALS")
    if path and Path(path).is_file():
        return "GOOGLE_APPLICATION_CREDENTIALS"
    if env.get("GOOGLE_OAUTH_ACCESS_TOKEN"):
        return "GOOGLE_OAUTH_ACCESS_TOKEN"
    if _adc_file(env).is_file():
        return "gcloud application-default credentials"
    if probe(env):
        return "the metadata server"
    return None


def problems(
    env: Mapping[str, str] | None = None, probe: Callable[[Mapping[str, str]], bool] = metadata_server_answers
) -> list[str]:
    env = os.environ if env is None else env
    found = []
    if shutil.which("terraform") is None:
        found.append("terraform is not on PATH (install Terraform 1.9 or newer)")
    if credential_source(env, probe) is None:
        found.append(
            "no Google credentials: run `gcloud auth application-default login`, or set GOOGLE_CREDENTIALS "
            "or GOOGLE_APPLICATION_CREDENTIALS to a service account key, or run on a Google Cloud VM"
        )
    if not TFVARS.exists():
        found.append(f"{TFVARS.relative_to(REPO)} is missing: copy infra/terraform.tfvars.example and fill it in")
    elif tfvars_value(TFVARS.read_text(), "project_id") is None:
        found.append(f"{TFVARS.relative_to(REPO)} must set project_id")
    return found


def tfvars_value(text: str, name: str) -> str | None:
    """A string variable set in a .tfvars file (None when unset or empty)."""
    match = re.search(rf'^\s*{name}\s*=\s*"([^"]+)"', text, re.MULTILINE)
    return match.group(1) if match else None


# -- terraform ------------------------------------------------------------------------------


def terraform(*args: str, capture: bool = False, folder: Path = INFRA) -> str:
    """Run terraform in `folder`; on failure, one line that names the command."""
    command = ["terraform", f"-chdir={folder}", *args]
    done = subprocess.run(command, capture_output=capture, text=True)
    if done.returncode != 0:
        if capture and done.stderr:
            print(done.stderr, file=sys.stderr, end="")
        raise DeployError(f"`terraform {args[0]}` failed (exit status {done.returncode}): see its messages above")
    return done.stdout if capture else ""


def backend_text(bucket: str) -> str:
    return f'terraform {{\n  backend "gcs" {{\n    bucket = "{bucket}"\n    prefix = "jobqueue"\n  }}\n}}\n'


def init(state_bucket: str | None, folder: Path = INFRA) -> None:
    """terraform init, against the state bucket once it holds the state (see move_state)."""
    backend = folder / BACKEND_FILE
    if state_bucket and backend.exists() and f'"{state_bucket}"' not in backend.read_text():
        raise DeployError(f"{backend} names another bucket than state_bucket: move the state by hand")
    if state_bucket and not backend.exists():
        # Another machine may have moved the state there already: try the bucket first.
        backend.write_text(backend_text(state_bucket))
        done = subprocess.run(["terraform", f"-chdir={folder}", "init", "-input=false"], capture_output=True, text=True)
        if done.returncode == 0:
            return
        backend.unlink()  # no bucket yet: this apply creates it, then move_state moves the state
        terraform("init", "-input=false", "-reconfigure", folder=folder)
        return
    terraform("init", "-input=false", folder=folder)


def move_state(state_bucket: str, folder: Path = INFRA) -> None:
    """After the apply that created the state bucket, move the local state into it."""
    backend = folder / BACKEND_FILE
    if backend.exists():
        return
    backend.write_text(backend_text(state_bucket))
    try:
        terraform("init", "-input=false", "-migrate-state", "-force-copy", folder=folder)
    except DeployError:
        backend.unlink()
        raise
    print(f"The Terraform state is now in gs://{state_bucket}/jobqueue ({backend.name} says so).")


def plan_and_apply(apply: bool, state_bucket: str | None, folder: Path = INFRA, var_file: str = TFVARS.name) -> None:
    init(state_bucket, folder)
    # The saved plan is what apply carries out: no second plan, and no approval prompt, which
    # `terraform apply -input=false` would still ask for and fail on without a terminal.
    terraform("plan", "-input=false", f"-var-file={var_file}", f"-out={PLAN_FILE}", folder=folder)
    if apply:
        terraform("apply", "-input=false", PLAN_FILE, folder=folder)
        if state_bucket:
            move_state(state_bucket, folder)


# -- the smoke check ------------------------------------------------------------------------


@dataclass
class Check:
    """One call that a healthy function answers cheaply, and the answers that mean healthy."""

    name: str
    method: str
    url: str
    healthy: tuple[int, ...]
    meaning: str
    body: dict | None = None
    headers: dict = field(default_factory=dict)


def smoke_checks(urls: Mapping[str, str], api_token: str) -> list[Check]:
    """What each function is asked. status, cancel, process and sweep reach the database;
    enqueue answers its CORS preflight (nothing cheaper of it touches the database without
    creating a job)."""
    nobody = str(uuid.uuid4())
    auth = {"Authorization": f"Bearer {api_token}"}
    status_url = urls["status"] + ("&" if "?" in urls["status"] else "?") + f"id={nobody}"
    return [
        Check("enqueue", "OPTIONS", urls["enqueue"], (204,), "answers its preflight"),
        Check(
            "status",
            "GET",
            status_url,
            (404,),
            "the database knows no such job",
            headers={"Accept": "application/json"},
        ),
        Check(
            "cancel", "POST", urls["cancel"], (404,), "the database knows no such job", {"generationId": nobody}, auth
        ),
        Check("process", "POST", urls["process"], (200, 204), "the database answered a claim", {}),
        Check("sweep", "POST", urls["sweep"], (200,), "the database answered a sweep", {}),
    ]


def call_directly(check: Check, timeout: float = 60.0) -> str | None:
    """Send the check over HTTP; None when healthy, else the reason."""
    import httpx  # noqa: PLC0415 (only the smoke check needs it)

    try:
        response = httpx.request(check.method, check.url, json=check.body, headers=check.headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return f"{check.method} {check.url} failed: {exc.__class__.__name__}: {exc}"
    if response.status_code in check.healthy:
        return None
    expected = " or ".join(str(code) for code in check.healthy)
    return f"{check.method} {check.url} answered {response.status_code} (expected {expected}): {response.text[:200].strip()}"


def smoke(checks: list[Check], callers: Mapping[str, Callable[[Check], str | None]] | None = None) -> dict[str, str]:
    """Run every check; the failures by function name. `callers` replaces the direct HTTP call
    for some functions (process and sweep take internal traffic only: see call_through_scheduler)."""
    callers = callers or {}
    failures = {}
    for check in checks:
        reason = callers.get(check.name, call_directly)(check)
        if reason is not None:
            failures[check.name] = reason
    return failures


def report(urls: Mapping[str, str], failures: Mapping[str, str]) -> str:
    if failures:
        lines = [f"  {name}: {reason}" for name, reason in failures.items()]
        raise DeployError("Deployed, but these functions did not answer as they should:\n" + "\n".join(lines))
    width = max(len(name) for name in urls)
    return "Every function answered:\n" + "\n".join(f"  {name:<{width}}  {url}" for name, url in urls.items())


def call_through_scheduler(job_id: str, timeout: float = 300.0) -> Callable[[Check], str | None]:
    """process and sweep accept internal traffic only, so the operator's machine cannot call
    them: run their Cloud Scheduler job (OIDC as the invoker, internal) and read the result of
    that attempt from the job's status."""

    def call(check: Check) -> str | None:
        import google.auth  # noqa: PLC0415 (only a real deploy needs it)
        import google.auth.transport.requests  # noqa: PLC0415
        import httpx  # noqa: PLC0415

        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
        credentials.refresh(google.auth.transport.requests.Request())
        headers = {"Authorization": f"Bearer {credentials.token}"}
        api = f"https://cloudscheduler.googleapis.com/v1/{job_id}"
        before = httpx.get(api, headers=headers, timeout=30).json().get("lastAttemptTime", "")
        started = httpx.post(f"{api}:run", headers=headers, json={}, timeout=30)
        if started.status_code != 200:
            return f"could not run the Scheduler job {job_id}: {started.status_code} {started.text[:200]}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(5)
            job = httpx.get(api, headers=headers, timeout=30).json()
            if job.get("lastAttemptTime", "") > before:
                status = job.get("status") or {}
                if status.get("code", 0) == 0:
                    return None
                return f"its Scheduler job's attempt ended with {status.get('code')}: {status.get('message', '')}"
        return f"its Scheduler job made no attempt within {timeout:.0f} s"

    return call


def smoke_deployed() -> str:
    outputs = json.loads(terraform("output", "-json", capture=True))
    urls = outputs["function_urls"]["value"]
    checks = smoke_checks(urls, outputs["api_token"]["value"])
    jobs = outputs["scheduler_jobs"]["value"]
    return report(urls, smoke(checks, {name: call_through_scheduler(jobs[name]) for name in ("process", "sweep")}))


def main(argv: list[str]) -> int:
    action = argv[0] if argv else "plan"
    if action not in ("plan", "apply"):
        print("usage: python -m local.deploy plan|apply", file=sys.stderr)
        return 2
    missing = problems()
    if missing:
        print("Cannot deploy; nothing was changed:\n  - " + "\n  - ".join(missing), file=sys.stderr)
        return 1
    state_bucket = tfvars_value(TFVARS.read_text(), "state_bucket")
    try:
        build_all()
        plan_and_apply(action == "apply", state_bucket)
        if action == "apply":
            print(smoke_deployed())
    except DeployError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
