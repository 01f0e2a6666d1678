"""make plan / make deploy: build the bundles, then terraform init, plan to a file, and (deploy)
apply that plan, then call every deployed function and print the URLs only when all answer.

Everything that can be checked is checked first, and every problem is named in one message,
before anything is built or changed: terraform on PATH, Google credentials in any form the
provider accepts, and infra/terraform.tfvars with project_id. Applying a saved plan never
asks for approval, so `make deploy` runs without a terminal (CI, a pipe). A failing Terraform
command ends with one line naming it, after Terraform's own messages, not a traceback.
"""

from __future__ import annotations

import argparse
import datetime
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
    env: Mapping[str, str] | None = None,
    probe: Callable[[Mapping[str, str]], bool] = metadata_server_answers,
    tfvars: Path = TFVARS,
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
    shown = tfvars.relative_to(REPO) if tfvars.is_relative_to(REPO) else tfvars
    if not tfvars.exists():
        found.append(f"{shown} is missing: copy infra/terraform.tfvars.example and fill it in")
    elif tfvars_value(tfvars.read_text(), "project_id") is None:
        found.append(f"{shown} must set project_id")
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


def backend_text(bucket: str, stand_in: Path | None = None) -> str:
    """The gcs backend of the state bucket; with `stand_in` (offline tests: --state-stand-in), a
    local backend in a folder named after the bucket, which exists once the bucket would."""
    if stand_in is not None:
        path = stand_in / bucket / "jobqueue" / "default.tfstate"
        return f'terraform {{\n  backend "local" {{\n    path = "{path}" # stand-in of gs://{bucket}\n  }}\n}}\n'
    return f'terraform {{\n  backend "gcs" {{\n    bucket = "{bucket}"\n    prefix = "jobqueue"\n  }}\n}}\n'


def bucket_holds_state(bucket: str, folder: Path, stand_in: Path | None) -> bool:
    """Try the bucket as the backend (another machine may have moved the state there already)."""
    if stand_in is not None and not (stand_in / bucket).is_dir():
        return False  # as `terraform init` fails on a bucket that does not exist yet
    done = subprocess.run(["terraform", f"-chdir={folder}", "init", "-input=false"], capture_output=True, text=True)
    return done.returncode == 0


def init(state_bucket: str | None, folder: Path = INFRA, stand_in: Path | None = None) -> None:
    """terraform init, against the state bucket once it holds the state (see move_state)."""
    backend = folder / BACKEND_FILE
    if state_bucket and backend.exists() and f"{state_bucket}" not in backend.read_text():
        raise DeployError(f"{backend} names another bucket than state_bucket: move the state by hand")
    if state_bucket and not backend.exists():
        backend.write_text(backend_text(state_bucket, stand_in))
        if bucket_holds_state(state_bucket, folder, stand_in):
            return
        backend.unlink()  # no bucket yet: this apply creates it, then move_state moves the state
        terraform("init", "-input=false", "-reconfigure", folder=folder)
        return
    terraform("init", "-input=false", folder=folder)


def move_state(state_bucket: str, folder: Path = INFRA, stand_in: Path | None = None) -> None:
    """After the apply that created the state bucket, move the local state into it."""
    backend = folder / BACKEND_FILE
    if backend.exists():
        return
    if stand_in is not None:
        (stand_in / state_bucket).mkdir(parents=True, exist_ok=True)
        print(f"--state-stand-in: the state bucket gs://{state_bucket} is the folder {stand_in / state_bucket}")
    backend.write_text(backend_text(state_bucket, stand_in))
    try:
        terraform("init", "-input=false", "-migrate-state", "-force-copy", folder=folder)
    except DeployError:
        backend.unlink()
        raise
    print(f"The Terraform state is now in gs://{state_bucket}/jobqueue ({backend.name} says so).")


def plan_and_apply(
    apply: bool,
    state_bucket: str | None,
    folder: Path = INFRA,
    var_file: str = TFVARS.name,
    stand_in: Path | None = None,
) -> None:
    init(state_bucket, folder, stand_in)
    # The saved plan is what apply carries out: no second plan, and no approval prompt, which
    # `terraform apply -input=false` would still ask for and fail on without a terminal.
    terraform("plan", "-input=false", f"-var-file={var_file}", f"-out={PLAN_FILE}", folder=folder)
    if apply:
        terraform("apply", "-input=false", PLAN_FILE, folder=folder)
        if state_bucket:
            move_state(state_bucket, folder, stand_in)


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


def smoke(
    checks: list[Check],
    callers: Mapping[str, Callable[[Check], str | None]] | None = None,
    window: float = 0.0,
    pause: float = 15.0,
) -> dict[str, str]:
    """Run every check, and run again the ones that failed until they pass or `window` seconds
    have gone by; the failures by function name. `callers` replaces the direct HTTP call for some
    functions (process and sweep take internal traffic only: see call_through_scheduler)."""
    callers = callers or {}
    deadline = time.monotonic() + window
    pending, failures = list(checks), {}
    while True:
        failures = {}
        for check in pending:
            reason = callers.get(check.name, call_directly)(check)
            if reason is not None:
                failures[check.name] = reason
        pending = [check for check in pending if check.name in failures]
        if not pending or time.monotonic() + pause > deadline:
            return failures
        names = ", ".join(failures)
        print(f"Not answering as they should yet: {names}; again in {pause:.0f} s (IAM changes take minutes).")
        time.sleep(pause)


def report(urls: Mapping[str, str], failures: Mapping[str, str]) -> str:
    if failures:
        lines = [f"  {name}: {reason}" for name, reason in failures.items()]
        raise DeployError("Deployed, but these functions did not answer as they should:\n" + "\n".join(lines))
    width = max(len(name) for name in urls)
    return "Every function answered:\n" + "\n".join(f"  {name:<{width}}  {url}" for name, url in urls.items())


SCHEDULER_API = "https://cloudscheduler.googleapis.com/v1"


def instant(text: str) -> datetime.datetime:
    """An RFC 3339 UTC time as Google writes it (0 to 9 fraction digits); '' is the epoch."""
    if not text:
        return datetime.datetime.fromtimestamp(0, datetime.UTC)
    whole, _, fraction = text.rstrip("Z").partition(".")
    moment = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.UTC)
    return moment + datetime.timedelta(microseconds=int((fraction or "0")[:6].ljust(6, "0")))


def google_token() -> str:
    """An access token for Google's APIs: GOOGLE_OAUTH_ACCESS_TOKEN when set (as the provider
    takes it), else the application-default credentials."""
    if os.environ.get("GOOGLE_OAUTH_ACCESS_TOKEN"):
        return os.environ["GOOGLE_OAUTH_ACCESS_TOKEN"]
    import google.auth  # noqa: PLC0415 (only a real deploy needs it)
    import google.auth.transport.requests  # noqa: PLC0415

    credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    credentials.refresh(google.auth.transport.requests.Request())
    return credentials.token


def call_through_scheduler(
    job_id: str, applied_at: str, api: str = SCHEDULER_API, timeout: float = 300.0
) -> Callable[[Check], str | None]:
    """process and sweep accept internal traffic only, so the operator's machine cannot call
    them: run their Cloud Scheduler job (OIDC as the invoker, internal) and read the result of
    that attempt from the job's status: an attempt newer than both the apply (`applied_at`,
    RFC 3339 UTC) and the last one seen, so that a tick of the previous revision never counts."""

    def call(check: Check) -> str | None:
        import httpx  # noqa: PLC0415 (only the smoke check needs it)

        headers = {"Authorization": f"Bearer {google_token()}"}
        url = f"{api}/{job_id}"
        seen = httpx.get(url, headers=headers, timeout=30).json().get("lastAttemptTime", "")
        before = max(instant(seen), instant(applied_at))
        started = httpx.post(f"{url}:run", headers=headers, json={}, timeout=30)
        if started.status_code != 200:
            return f"could not run the Scheduler job {job_id}: {started.status_code} {started.text[:200]}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = httpx.get(url, headers=headers, timeout=30).json()
            if instant(job.get("lastAttemptTime", "")) > before:
                status = job.get("status") or {}
                if status.get("code", 0) == 0:
                    return None
                return f"its Scheduler job's attempt ended with {status.get('code')}: {status.get('message', '')}"
            time.sleep(2)
        return f"its Scheduler job made no attempt within {timeout:.0f} s"

    return call


@dataclass
class Options:
    """make deploy's options; the defaults deploy infra/ for real. Tests point them elsewhere."""

    action: str = "plan"
    infra: Path = INFRA
    var_file: Path = TFVARS
    smoke_urls: dict[str, str] = field(default_factory=dict)  # function -> URL called instead of its own
    scheduler_api: str = SCHEDULER_API
    state_stand_in: Path | None = None
    smoke_seconds: float = 420.0  # Google: IAM changes "could potentially take 7 minutes or longer"


def smoke_deployed(options: Options, applied_at: str) -> str:
    outputs = json.loads(terraform("output", "-json", capture=True, folder=options.infra))
    urls = {**outputs["function_urls"]["value"], **options.smoke_urls}
    for name, url in options.smoke_urls.items():
        print(f"--smoke-url: {name} is checked at {url}, not at its deployed URL")
    if options.scheduler_api != SCHEDULER_API:
        print(f"--scheduler-api: Cloud Scheduler is called at {options.scheduler_api}")
    checks = smoke_checks(urls, outputs["api_token"]["value"])
    jobs = outputs["scheduler_jobs"]["value"]
    callers = {
        name: call_through_scheduler(jobs[name], applied_at, options.scheduler_api) for name in ("process", "sweep")
    }
    return report(urls, smoke(checks, callers, window=options.smoke_seconds))


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(prog="python -m local.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("action", nargs="?", default="plan", choices=("plan", "apply"))
    parser.add_argument("--infra", type=Path, default=INFRA, help="the Terraform folder (default infra/)")
    parser.add_argument("--var-file", type=Path, help="the tfvars file (default: terraform.tfvars in --infra)")
    parser.add_argument("--smoke-url", action="append", default=[], metavar="NAME=URL", help="check NAME at URL")
    parser.add_argument("--scheduler-api", default=SCHEDULER_API, help="Cloud Scheduler's API root (tests)")
    parser.add_argument("--state-stand-in", type=Path, help="a folder standing in for the state bucket (tests)")
    parser.add_argument("--smoke-seconds", type=float, default=420.0, help="how long failing checks are retried")
    args = parser.parse_args(argv)
    infra = args.infra.resolve()
    return Options(
        action=args.action,
        infra=infra,
        var_file=(args.var_file or infra / TFVARS.name).resolve(),
        smoke_urls=dict(pair.split("=", 1) for pair in args.smoke_url),
        scheduler_api=args.scheduler_api.rstrip("/"),
        state_stand_in=args.state_stand_in.resolve() if args.state_stand_in else None,
        smoke_seconds=args.smoke_seconds,
    )


def main(argv: list[str]) -> int:
    options = parse(argv)
    missing = problems(tfvars=options.var_file)
    if missing:
        print("Cannot deploy; nothing was changed:\n  - " + "\n  - ".join(missing), file=sys.stderr)
        return 1
    state_bucket = tfvars_value(options.var_file.read_text(), "state_bucket")
    try:
        # infra/'s bundle_dir is ../build: beside the Terraform folder, wherever that is.
        build_all(REPO / "build" if options.infra == INFRA else options.infra.parent / "build")
        plan_and_apply(
            options.action == "apply", state_bucket, options.infra, str(options.var_file), options.state_stand_in
        )
        # Scheduler attempts from here on reach the revisions this apply made.
        applied_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if options.action == "apply":
            print(smoke_deployed(options, applied_at))
    except DeployError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
