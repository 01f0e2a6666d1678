"""infra/ checked offline (the Google provider cannot be downloaded here, so no `terraform
validate`): terraform fmt; every resource and data block against the provider's own schema
(local/tfschema.py); the wiring read from the parsed HCL; the values Terraform computes
(`terraform console` on infra/variables.tf and infra/limits.tf, which need no provider) held
to Google's documented limits (local/platform_limits.py); and `terraform plan` failing on an
over-budget or refused configuration. Each defect that once would have stopped a first apply is
planted in a copy of infra/ and shown to be caught."""

from __future__ import annotations

import ast
import functools
import json
import re
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest

from local import platform_limits, tfschema
from local.functions import FUNCTIONS

REPO = Path(__file__).resolve().parent.parent
INFRA = REPO / "infra"
TFVARS_EXAMPLE = INFRA / "terraform.tfvars.example"
FUNCTION_DIRS = sorted(FUNCTIONS)  # the one list (tests/test_layers.py holds it to the folders)
needs_terraform = pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")


def unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [unquote(item) for item in value]
    if isinstance(value, dict):
        return {unquote(key): unquote(item) for key, item in value.items() if key != "__is_block__"}
    return value


@functools.lru_cache(maxsize=256)
def parse_text(text: str) -> dict:
    """One file's HCL (cached by its text: python-hcl2 takes a while per file)."""
    return unquote(hcl2.loads(text))


def parsed(folder: Path = INFRA) -> dict[str, dict]:
    return {path.name: parse_text(path.read_text()) for path in sorted(folder.glob("*.tf"))}


def blocks(kind: str, type_name: str, folder: Path = INFRA) -> dict:
    """Every `kind "type_name" "label" {}` block across the folder's .tf files, by label."""
    found = {}
    for tree in parsed(folder).values():
        for entry in tree.get(kind, []):
            for label, body in entry.get(type_name, {}).items():
                found[label] = body
    return found


def variables(folder: Path = INFRA) -> dict:
    found = {}
    for tree in parsed(folder).values():
        for entry in tree.get("variable", []):
            found.update(entry)
    return found


def variable(name: str) -> dict:
    return variables()[name]


def local(name: str, folder: Path = INFRA):
    for tree in parsed(folder).values():
        for entry in tree.get("locals", []):
            if name in entry:
                return entry[name]
    raise KeyError(name)


# -- what Terraform computes ----------------------------------------------------------------

# What the limits depend on, as one line for `terraform console` (it reads line by line).
EVALUATED = (
    "sizes = local.sizes",
    "schedules = local.schedules",
    "task_dispatch_deadline = local.task_dispatch_deadline",
    "database_version = var.database_version",
    "db_edition = var.db_edition",
    "db_tier = var.db_tier",
    "db_max_connections = var.db_max_connections",
    "db_reserved_connections = var.db_reserved_connections",
    "max_concurrent_jobs = var.max_concurrent_jobs",
)
EVALUATE = "jsonencode({" + ", ".join(EVALUATED) + "})\n"


def terraform(folder: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["terraform", f"-chdir={folder}", *args], input=stdin, capture_output=True, text=True, timeout=120
    )


def limits_module(folder: Path, scratch: Path) -> Path:
    """infra/variables.tf and infra/limits.tf alone, initialised: they need no provider (only
    Terraform's built-in terraform_data), so plan and console run offline."""
    scratch.mkdir(parents=True, exist_ok=True)
    for name in ("variables.tf", "limits.tf"):
        shutil.copy(folder / name, scratch / name)
    done = terraform(scratch, "init", "-input=false", "-no-color")
    assert done.returncode == 0, done.stderr
    return scratch


# job_timeout_seconds at the top of its allowed range: the deadlines derived from it must still fit.
LONGEST_JOBS = ("-var", "job_timeout_seconds=3600")


def evaluated(folder: Path, scratch: Path, tfvars: Path | None = None, extra: tuple[str, ...] = ()) -> dict:
    module = limits_module(folder, scratch)
    args = ["console", "-no-color", "-var", "project_id=p", *extra]
    if tfvars is not None:
        args.append(f"-var-file={tfvars}")
    done = terraform(module, *args, stdin=EVALUATE)
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith('"'))
    return json.loads(json.loads(line))


# -- the checks ------------------------------------------------------------------------------


def limit_problems(values: dict, edition_set: bool = True) -> list[str]:
    """Computed values against Google's documented limits."""
    found = []
    for name, size in values["sizes"].items():
        found += platform_limits.cpu_memory_problems(name, float(size["cpu"]), size["memory"], size["concurrency"])
        found += platform_limits.timeout_problems(name, size["timeout"])
    for name, schedule in values["schedules"].items():
        found += platform_limits.deadline_problems(
            f"Scheduler {name} attempt deadline",
            schedule["attempt_deadline"],
            platform_limits.SCHEDULER_ATTEMPT_DEADLINE_SECONDS,
        )
    found += platform_limits.deadline_problems(
        "Cloud Tasks dispatch deadline",
        values["task_dispatch_deadline"],
        platform_limits.TASK_DISPATCH_DEADLINE_SECONDS,
    )
    found += platform_limits.database_problems(
        values["database_version"], values["db_edition"] if edition_set else None, values["db_tier"]
    )
    found += platform_limits.budget_problems(
        values["sizes"], values["db_reserved_connections"], values["db_tier"], values["db_max_connections"]
    )
    return found


def references(body) -> set[str]:
    """The resources and data sources a block refers to (`google_x.name`, `data.google_x.name`)."""
    return set(re.findall(r"(?<![\w.])(data\.[a-z0-9_]+\.[a-z0-9_]+|google_[a-z0-9_]+\.[a-z0-9_]+)", json.dumps(body)))


def api_problems(folder: Path) -> list[str]:
    """Every Google resource and data source waits for the APIs, directly or through what it
    refers to; the list holds Cloud Resource Manager (data.google_project, project IAM), which
    with Service Usage is enabled first, by google_project_service.foundation."""
    found = []
    listed = str(local("apis", folder)) + str(local("foundation_apis", folder))
    apis = set(re.findall(r"[a-z0-9]+\.googleapis\.com", listed))
    needed = {"cloudresourcemanager.googleapis.com", "cloudfunctions.googleapis.com", "run.googleapis.com"}
    needed |= {"cloudbuild.googleapis.com", "artifactregistry.googleapis.com", "sqladmin.googleapis.com"}
    needed |= {"cloudtasks.googleapis.com", "cloudscheduler.googleapis.com", "secretmanager.googleapis.com"}
    needed |= {"iam.googleapis.com", "storage.googleapis.com"}
    found += [f"API {api} is not enabled by infra/" for api in sorted(needed - apis)]
    graph = {}
    for tree in parsed(folder).values():
        for kind in ("resource", "data"):
            for entry in tree.get(kind, []):
                for type_name, instances in entry.items():
                    for label, body in instances.items():
                        key = f"{'data.' if kind == 'data' else ''}{type_name}.{label}"
                        graph[key] = references(body)
    waits: dict[str, bool] = {}

    def waits_for_apis(key: str, seen: frozenset = frozenset()) -> bool:
        if key == "google_project_service.api":
            return True
        if key not in waits:
            waits[key] = any(waits_for_apis(ref, seen | {key}) for ref in graph.get(key, ()) if ref not in seen)
        return waits[key]

    for key in graph:
        google = key.removeprefix("data.").startswith("google_")
        roots = ("google_project_service.api", "google_project_service.foundation")
        if google and key not in roots and not waits_for_apis(key):
            found.append(f"{key} does not wait for google_project_service.api")
    return found


def wiring_problems(folder: Path) -> list[str]:
    """The defects that stopped a first apply, read from the HCL."""
    found = []
    instance = blocks("resource", "google_sql_database_instance", folder)["main"]
    edition = instance["settings"][0].get("edition")
    if edition != "${var.db_edition}":
        found.append("the Cloud SQL instance does not set its edition from var.db_edition")
    fn = blocks("resource", "google_cloudfunctions2_function", folder)["fn"]
    service = fn["service_config"][0]
    if service.get("available_cpu") != "${each.value.cpu}":
        found.append("service_config.available_cpu is not the function's cpu")
    if service.get("max_instance_request_concurrency") != "${each.value.concurrency}":
        found.append("service_config.max_instance_request_concurrency is not the function's concurrency")
    for dynamic in service.get("dynamic", []):
        content = dynamic.get("secret_environment_variables", {}).get("content", [{}])[0]
        if "google_secret_manager_secret_version.secret[" not in str(content.get("version")):
            found.append(f"a secret is read as version {content.get('version')!r}, not the version Terraform wrote")
    source = fn["build_config"][0]["source"][0]["storage_source"][0]
    if "google_storage_bucket_object.bundle[each.key].generation" not in str(source.get("generation")):
        found.append("storage_source.generation is not taken from the bundle object")
    if fn["build_config"][0].get("service_account") != "${google_service_account.build.id}":
        found.append("the build does not run as the build service account")
    build_roles = blocks("resource", "google_project_iam_member", folder).get("build", {}).get("for_each", "")
    for role in ("roles/logging.logWriter", "roles/artifactregistry.writer", "roles/storage.objectAdmin"):
        if role not in build_roles:
            found.append(f"the build service account lacks {role}")
    users = blocks("resource", "google_sql_user", folder)
    if users.get("owner", {}).get("database_roles") != ["cloudsqlsuperuser"]:
        found.append("the owner database user is not a member of cloudsqlsuperuser")
    if users.get("fn", {}).get("database_roles") != ["${google_sql_user.owner.name}"]:
        found.append("the functions' database users are not granted the owner role")
    if local("database_env", folder).get("DB_OWNER_ROLE") != "${google_sql_user.owner.name}":
        found.append("the functions do not migrate under the owner role (DB_OWNER_ROLE)")
    return found + api_problems(folder)


def infra_problems(folder: Path, scratch: Path) -> list[str]:
    """Everything this file checks, for a folder like infra/."""
    found = tfschema.check(folder) + wiring_problems(folder)
    edition_set = "edition" in blocks("resource", "google_sql_database_instance", folder)["main"]["settings"][0]
    if shutil.which("terraform") is not None:
        found += limit_problems(evaluated(folder, scratch), edition_set)
        found += limit_problems(evaluated(folder, scratch, extra=LONGEST_JOBS), edition_set)
    return found


# -- infra/ as it is -------------------------------------------------------------------------


@needs_terraform
def test_terraform_files_are_formatted():
    done = subprocess.run(["terraform", "fmt", "-check", "-recursive", str(INFRA)], capture_output=True, text=True)
    assert done.returncode == 0, f"not formatted: {done.stdout}"


def test_every_resource_and_data_block_matches_the_provider_schema():
    assert tfschema.check(INFRA) == []


def test_the_schema_is_the_one_the_version_constraint_selects():
    google = tfschema.required_providers(tfschema.parse(INFRA))["google"]
    package = tfschema.package_for(google["source"], google["version"])
    assert package.name == "cdktn-provider-google" and package.provider_version.startswith("8.")
    schema = tfschema.load_schema(package)
    user = schema["structs"][schema["resource"]["google_sql_user"]]
    assert "database_roles" in user["arguments"], "8.x has database_roles on google_sql_user"
    for name in ("archive", "random"):
        spec = tfschema.required_providers(tfschema.parse(INFRA))[name]
        assert "<" in spec["version"], f"{name}'s version is bounded above"


def test_version_constraints_select_the_matching_schema_package():
    assert tfschema.satisfies("8.7.0", ">= 8.0, < 9.0") and not tfschema.satisfies("6.50.0", ">= 8.0, < 9.0")
    assert tfschema.satisfies("8.7.0", "~> 8.1") and not tfschema.satisfies("9.0.0", "~> 8.1")
    assert tfschema.satisfies("8.1.5", "~> 8.1.2") and not tfschema.satisfies("8.2.0", "~> 8.1.2")
    assert tfschema.package_for("hashicorp/google", ">= 6.0, < 7.0").name == "cdktf-cdktf-provider-google"
    with pytest.raises(LookupError, match="no known CDK package"):
        tfschema.package_for("hashicorp/google", ">= 9.0")


def test_nothing_stops_a_first_apply(tmp_path):
    assert wiring_problems(INFRA) == []


@needs_terraform
def test_defaults_and_the_example_fit_googles_documented_limits(tmp_path):
    defaults = evaluated(INFRA, tmp_path / "defaults")
    assert limit_problems(defaults) == []
    example = evaluated(INFRA, tmp_path / "example", TFVARS_EXAMPLE)
    assert limit_problems(example) == []
    assert limit_problems(evaluated(INFRA, tmp_path / "longest", extra=LONGEST_JOBS)) == []
    # The defaults fit db-f1-micro's 25 connections, with the reserve and PostgreSQL's three.
    used = sum(size["connections"] for size in defaults["sizes"].values()) + defaults["db_reserved_connections"]
    assert defaults["db_tier"] == "db-f1-micro" and used <= 25 - 3
    process = defaults["sizes"]["process"]
    assert defaults["max_concurrent_jobs"] + 1 <= process["max_instances"] * process["concurrency"]


@needs_terraform
def test_terraform_plan_passes_with_the_defaults_and_the_example(tmp_path):
    module = limits_module(INFRA, tmp_path)
    for extra in ([], [f"-var-file={TFVARS_EXAMPLE}"]):
        done = terraform(module, "plan", "-input=false", "-no-color", "-var", "project_id=p", *extra)
        assert done.returncode == 0, done.stderr


@needs_terraform
@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            ["-var", "max_instances={enqueue=10,process=10,status=10,cancel=10,sweep=10}"],
            "enqueue 10 x (1 + 0 + 1)",
        ),
        (["-var", "db_pool_size={enqueue=5,process=5,status=5,cancel=5,sweep=5}"], "connections, but db-f1-micro"),
        # 18 of 22 without the migration connection each starting instance opens; 25 with it.
        (["-var", "db_pool_size={enqueue=2,process=2,status=2,cancel=2,sweep=1}"], "= 25 connections, but db-f1-micro"),
        (["-var", "db_edition=ENTERPRISE_PLUS"], "is not offered with ENTERPRISE_PLUS"),
        (["-var", "db_tier=db-n1-standard-1"], "is not offered with ENTERPRISE"),
        (["-var", "database_version=POSTGRES_11", "-var", "db_edition=ENTERPRISE_PLUS"], "Enterprise Plus"),
        (["-var", "max_concurrent_jobs=200"], "max_concurrent_jobs (200)"),
        (["-var", "region=eu-west-1"], "region must be a Google Cloud region"),
        (["-var", "region=europe-west1-b"], "region must be a Google Cloud region"),
    ],
)
def test_terraform_plan_stops_on_a_configuration_google_would_refuse(tmp_path, variables, expected):
    module = limits_module(INFRA, tmp_path)
    done = terraform(module, "plan", "-input=false", "-no-color", "-var", "project_id=p", *variables)
    assert done.returncode != 0
    assert expected in " ".join(done.stderr.split()), done.stderr


# -- defects planted in a copy of infra/ -----------------------------------------------------

PLANTED = [
    # (what, file, text that is there, what replaces it, a word of the problem reported)
    ("no edition", "database.tf", "    edition           = var.db_edition\n", "", "edition"),
    (
        "concurrency above 1 on a fraction of a vCPU",
        "limits.tf",
        'cpu         = "1"\n      memory      = "512Mi"\n      concurrency = 8',
        'cpu         = "0.5"\n      memory      = "512Mi"\n      concurrency = 8',
        "needs at least 1 vCPU",
    ),
    (
        "no CPU given to the functions",
        "functions.tf",
        "    available_cpu                    = each.value.cpu\n",
        "",
        "available_cpu",
    ),
    (
        "a CPU and memory pair Cloud Run refuses",
        "limits.tf",
        'memory      = "1Gi"',
        'memory      = "8Gi"',
        "8Gi needs at least 2 vCPU",
    ),
    (
        "a secret read as latest",
        "functions.tf",
        "version = google_secret_manager_secret_version.secret[secret_environment_variables.value].version",
        'version = "latest"',
        "latest",
    ),
    (
        "a typo'd argument",
        "functions.tf",
        "max_instance_count ",
        "max_instances_count",
        'did you mean "max_instance_count"',
    ),
    ("a required argument missing", "tasks.tf", "  location = var.region\n", "", 'required argument "location"'),
    ("a block written as an argument", "functions.tf", "  versioning {", "  versioning = {", '"versioning" is a block'),
    (
        "an argument written as a block",
        "apis.tf",
        "  service = each.value\n",
        "  service {\n  }\n",
        '"service" is an argument',
    ),
    (
        "a single block repeated",
        "tasks.tf",
        "  stackdriver_logging_config {",
        "  stackdriver_logging_config {\n    sampling_ratio = 1.0\n  }\n\n  stackdriver_logging_config {",
        "may appear once",
    ),
    (
        "an unknown resource type",
        "tasks.tf",
        '"google_cloud_tasks_queue" "jobs"',
        '"google_cloud_task_queue" "jobs"',
        "resource type",
    ),
    (
        "connections over the budget",
        "variables.tf",
        "default     = { enqueue = 2, process = 2, status = 1, cancel = 1, sweep = 1 }",
        "default     = { enqueue = 10, process = 10, status = 10, cancel = 10, sweep = 10 }",
        "connections:",
    ),
    ("a timeout over 60 minutes", "limits.tf", "timeout     = 3600", "timeout     = 7200", "timeout 7200"),
    (
        "a Scheduler deadline over 30 minutes",
        "limits.tf",
        "attempt_deadline = min(var.job_timeout_seconds, 1800)",
        "attempt_deadline = var.job_timeout_seconds",
        "attempt deadline",
    ),
    (
        "a dispatch deadline over 30 minutes",
        "limits.tf",
        "task_dispatch_deadline = min(var.job_timeout_seconds, 1800)",
        "task_dispatch_deadline = var.job_timeout_seconds",
        "dispatch deadline",
    ),
    (
        "a tier the edition refuses",
        "variables.tf",
        'default     = "ENTERPRISE"\n',
        'default     = "ENTERPRISE_PLUS"\n',
        "not offered",
    ),
    (
        "a stale bundle generation",
        "functions.tf",
        "        generation = google_storage_bucket_object",
        "        # generation = google_storage_bucket_object",
        "generation",
    ),
    (
        "the default build account",
        "functions.tf",
        "    service_account = google_service_account.build.id\n",
        "",
        "build service account",
    ),
    ("the manual GRANT back", "database.tf", "  database_roles = [google_sql_user.owner.name]\n", "", "owner role"),
    (
        "an API racing its enablement",
        "tasks.tf",
        "  depends_on = [google_project_service.api]\n",
        "",
        "google_cloud_tasks_queue.jobs does not wait",
    ),
    (
        "Cloud Resource Manager left off",
        "apis.tf",
        '    "cloudresourcemanager.googleapis.com",\n',
        "",
        "cloudresourcemanager",
    ),
]


def test_infra_as_it_is_has_no_problem(tmp_path):
    assert infra_problems(INFRA, tmp_path) == []


@pytest.mark.parametrize(("what", "file", "old", "new", "expected"), PLANTED, ids=[p[0] for p in PLANTED])
def test_a_planted_defect_is_caught(tmp_path, what, file, old, new, expected):
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", ".bundles", "*.tfvars"))
    text = (copy / file).read_text()
    assert old in text, f"the text to plant {what!r} into is no longer in {file}"
    (copy / file).write_text(text.replace(old, new, 1))
    problems = infra_problems(copy, tmp_path / "scratch")
    assert any(expected in problem for problem in problems), f"{what} was not caught: {problems}"


# -- the wiring ------------------------------------------------------------------------------


def test_every_function_folder_has_exactly_one_function_with_its_entry_point():
    functions = local("function_sizes")
    assert sorted(functions) == FUNCTION_DIRS == sorted(local("function_names"))
    resources = blocks("resource", "google_cloudfunctions2_function")
    assert list(resources) == ["fn"], "one resource, fed by for_each"
    fn = resources["fn"]
    assert fn["for_each"] == "${local.functions}"
    assert fn["build_config"][0]["entry_point"] == "${each.key}"
    assert fn["build_config"][0]["runtime"] == "${var.python_runtime}"
    assert variable("python_runtime")["default"] >= "python311"
    for name in FUNCTION_DIRS:  # the entry point named after the folder exists, as an http function
        tree = ast.parse((REPO / "functions" / name / "main.py").read_text())
        entry = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name]
        assert entry and any(ast.unparse(d) == "functions_framework.http" for d in entry[0].decorator_list)


def test_timeouts_threads_and_pools_reach_each_function():
    sizes = local("function_sizes")
    assert sizes["process"]["timeout"] == "${var.job_timeout_seconds}"
    assert sizes["status"]["concurrency"] == "${var.status_streams_per_instance + 4}"
    assert sizes["status"]["timeout"] == 3600 and sizes["status"]["listeners"] == 1
    for short in ("enqueue", "cancel", "sweep"):
        assert sizes[short]["timeout"] <= 300
    status_env = local("function_env")["status"]
    assert "MAX_OPEN_STREAMS" in status_env and "STREAM_MAX_SECONDS" in status_env
    functions = local("functions")
    assert "THREADS = tostring(size.concurrency)" in functions and "DB_POOL_SIZE = tostring(size.pool)" in functions
    service = blocks("resource", "google_cloudfunctions2_function")["fn"]["service_config"][0]
    assert service["environment_variables"] == "${each.value.env}"
    assert service["max_instance_count"] == "${each.value.max_instances}"


def test_scheduler_calls_process_and_sweep_with_oidc():
    schedules = local("schedules")
    assert schedules["process"]["cron"] == "* * * * *" and schedules["sweep"]["cron"] == "*/5 * * * *"
    job = blocks("resource", "google_cloud_scheduler_job")["tick"]
    assert job["attempt_deadline"] == "${each.value.attempt_deadline}s"
    target = job["http_target"][0]
    assert target["uri"] == "${google_cloudfunctions2_function.fn[each.key].service_config[0].uri}"
    assert target["oidc_token"][0]["service_account_email"] == "${google_service_account.invoker.email}"


def test_the_queue_and_urls_reach_enqueue():
    env = local("function_env")
    tasks_env = local("tasks_env")
    assert tasks_env["TASKS_QUEUE"] == "${local.queue_path}"
    assert tasks_env["PROCESS_URL"] == '${local.url["process"]}'
    assert tasks_env["TASKS_SERVICE_ACCOUNT"] == "${google_service_account.invoker.email}"
    assert tasks_env["JOB_TIMEOUT_SECONDS"] == "${tostring(local.task_dispatch_deadline)}"
    assert "local.tasks_env" in env["enqueue"] and 'STATUS_URL = local.url["status"]' in env["enqueue"]
    queue = blocks("resource", "google_cloud_tasks_queue")["jobs"]
    assert queue["rate_limits"][0]["max_concurrent_dispatches"] == "${var.max_concurrent_jobs}"


def test_each_function_has_its_own_account_and_each_secret_reaches_only_its_functions():
    tokens = ("API_TOKEN", "API_TOKENS", "ADMIN_TOKEN")
    assert all(name in local("token_secrets") for name in tokens)

    def listed(entry) -> set[str]:  # local.token_secrets spelled out
        text = str(entry).replace("local.token_secrets", " ".join(tokens))
        return set(re.findall(r"\b(?:API_TOKENS?|ADMIN_TOKEN|WEBHOOK_SECRET)\b", text))

    secrets = {name: listed(entry) for name, entry in local("function_secrets").items()}
    holders = {
        secret: sorted(name for name, names in secrets.items() if secret in names)
        for secret in (*tokens, "WEBHOOK_SECRET")
    }
    callers = ["cancel", "enqueue", "status"]  # the functions that authenticate callers
    assert holders == {**dict.fromkeys(tokens, callers), "WEBHOOK_SECRET": ["cancel", "process", "sweep"]}
    fn = blocks("resource", "google_cloudfunctions2_function")["fn"]
    assert fn["service_config"][0]["service_account_email"] == "${google_service_account.fn[each.key].email}"
    assert blocks("resource", "google_service_account")["fn"]["for_each"] == "${local.function_sizes}"
    reads = blocks("resource", "google_secret_manager_secret_iam_member")
    assert list(reads) == ["reads"]
    assert "local.function_secrets" in reads["reads"]["for_each"]
    assert reads["reads"]["member"] == "serviceAccount:${google_service_account.fn[each.value.function].email}"
    for name, env in local("function_env").items():
        assert "API_TOKEN" not in str(env) and "WEBHOOK_SECRET" not in str(env), name


def test_nothing_is_public_that_should_not_be():
    public = variable("public_functions")
    assert sorted(public["default"]) == ["cancel", "enqueue", "status"]
    assert "process" in public["validation"][0]["condition"] and "sweep" in public["validation"][0]["condition"]
    members = blocks("resource", "google_cloud_run_service_iam_member")
    assert members["public"]["member"] == "allUsers" and members["public"]["for_each"] == "${var.public_functions}"
    assert members["invoker"]["for_each"] == '${toset(["process", "sweep"])}'
    assert members["invoker"]["role"] == "roles/run.invoker"


def test_the_database_uses_iam_auth_backups_tls_and_deletion_protection():
    instance = blocks("resource", "google_sql_database_instance")["main"]
    assert instance["deletion_protection"] == "${var.deletion_protection}"
    assert variable("deletion_protection")["default"] is True
    settings = instance["settings"][0]
    assert settings["backup_configuration"][0]["enabled"] is True
    assert settings["ip_configuration"][0]["ssl_mode"] == "TRUSTED_CLIENT_CERTIFICATE_REQUIRED"
    flags = {flag["name"]: flag["value"] for flag in settings["database_flags"]}
    assert flags["cloudsql.iam_authentication"] == "on"
    users = blocks("resource", "google_sql_user")
    assert {label: user["type"] for label, user in users.items()} == {
        "owner": "CLOUD_IAM_SERVICE_ACCOUNT",
        "fn": "CLOUD_IAM_SERVICE_ACCOUNT",
        "operator": "CLOUD_IAM_USER",
    }
    assert users["operator"]["database_roles"] == ["${google_sql_user.owner.name}"]
    assert "password" not in str(users)


def test_the_state_bucket_is_versioned_with_uniform_access():
    bucket = blocks("resource", "google_storage_bucket")["state"]
    assert bucket["count"] == '${var.state_bucket == "" ? 0 : 1}'
    assert bucket["versioning"][0]["enabled"] is True and bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"


def test_every_variable_is_typed_and_described():
    for name, spec in variables().items():
        assert spec.get("type") and spec.get("description"), name


def test_bundles_are_zipped_under_content_hash_names():
    archive = blocks("data", "archive_file")["bundle"]
    assert archive["output_file_mode"] == "0644"
    obj = blocks("resource", "google_storage_bucket_object")["bundle"]
    assert "output_md5" in obj["name"] and "timestamp" not in str(obj)
