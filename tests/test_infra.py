"""infra/ checked offline (the Google provider cannot be downloaded here): terraform fmt, and
the wiring read from the parsed HCL."""

import ast
import shutil
import subprocess
from pathlib import Path

import hcl2
import pytest

REPO = Path(__file__).resolve().parent.parent
INFRA = REPO / "infra"
FUNCTION_DIRS = sorted(path.name for path in (REPO / "functions").iterdir() if (path / "main.py").exists())


def unquote(value):
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, list):
        return [unquote(item) for item in value]
    if isinstance(value, dict):
        return {unquote(key): unquote(item) for key, item in value.items() if key != "__is_block__"}
    return value


def load(name: str) -> dict:
    with open(INFRA / name) as handle:
        return unquote(hcl2.load(handle))


def blocks(kind: str, type_name: str) -> dict:
    """Every `kind "type_name" "label" {}` block across infra/*.tf, by label."""
    found = {}
    for path in sorted(INFRA.glob("*.tf")):
        for entry in load(path.name).get(kind, []):
            for label, body in entry.get(type_name, {}).items():
                found[label] = body
    return found


def variables() -> dict:
    found = {}
    for path in sorted(INFRA.glob("*.tf")):
        for entry in load(path.name).get("variable", []):
            found.update(entry)
    return found


def variable(name: str) -> dict:
    return variables()[name]


def local(name: str):
    for path in sorted(INFRA.glob("*.tf")):
        for entry in load(path.name).get("locals", []):
            if name in entry:
                return entry[name]
    raise KeyError(name)


def test_terraform_files_are_formatted():
    if shutil.which("terraform") is None:
        pytest.skip("terraform is not installed: fmt cannot be checked")
    done = subprocess.run(["terraform", "fmt", "-check", "-recursive", str(INFRA)], capture_output=True, text=True)
    assert done.returncode == 0, f"not formatted: {done.stdout}"


def test_every_function_folder_has_exactly_one_function_with_its_entry_point():
    functions = local("functions")
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


def test_timeouts_memory_and_threads_suit_each_function():
    functions = local("functions")
    assert functions["process"]["timeout"] == "${var.job_timeout_seconds}"
    assert variable("job_timeout_seconds")["default"] <= 3600
    assert functions["status"]["threads"] == "${var.status_streams_per_instance + 4}"
    assert "MAX_OPEN_STREAMS" in functions["status"]["env"]
    assert functions["status"]["timeout"] == 3600 and "STREAM_MAX_SECONDS" in functions["status"]["env"]
    for short in ("enqueue", "cancel", "sweep"):
        assert functions[short]["timeout"] <= 300
    service = blocks("resource", "google_cloudfunctions2_function")["fn"]["service_config"][0]
    assert "THREADS" in service["environment_variables"]


def test_scheduler_calls_process_and_sweep_with_oidc():
    schedules = local("schedules")
    assert schedules == {"process": "* * * * *", "sweep": "*/5 * * * *"}
    job = blocks("resource", "google_cloud_scheduler_job")["tick"]
    target = job["http_target"][0]
    assert target["uri"] == "${google_cloudfunctions2_function.fn[each.key].service_config[0].uri}"
    assert target["oidc_token"][0]["service_account_email"] == "${google_service_account.invoker.email}"


def test_the_queue_and_urls_reach_enqueue():
    functions = local("functions")
    tasks_env = local("tasks_env")
    assert tasks_env["TASKS_QUEUE"] == "${local.queue_path}"
    assert tasks_env["PROCESS_URL"] == '${local.url["process"]}'
    assert tasks_env["TASKS_SERVICE_ACCOUNT"] == "${google_service_account.invoker.email}"
    assert (
        "local.tasks_env" in functions["enqueue"]["env"]
        and 'STATUS_URL = local.url["status"]' in functions["enqueue"]["env"]
    )
    queue = blocks("resource", "google_cloud_tasks_queue")["jobs"]
    assert queue["rate_limits"][0]["max_concurrent_dispatches"] == "${var.max_concurrent_jobs}"


def test_each_secret_reaches_only_the_functions_that_need_it():
    functions = local("functions")
    holders = {
        secret: sorted(name for name, spec in functions.items() if secret in spec["secrets"])
        for secret in ("API_TOKEN", "WEBHOOK_SECRET")
    }
    assert holders == {"API_TOKEN": ["cancel", "enqueue"], "WEBHOOK_SECRET": ["cancel", "process", "sweep"]}
    dynamic = blocks("resource", "google_cloudfunctions2_function")["fn"]["service_config"][0]["dynamic"][0]
    assert dynamic["secret_environment_variables"]["for_each"] == "${toset(each.value.secrets)}"
    for name, spec in functions.items():
        assert "API_TOKEN" not in str(spec["env"]) and "WEBHOOK_SECRET" not in str(spec["env"]), name


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
    assert blocks("resource", "google_sql_user")["runtime"]["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
    assert "password" not in str(blocks("resource", "google_sql_user"))


def test_every_variable_is_typed_and_described():
    for name, spec in variables().items():
        assert spec.get("type") and spec.get("description"), name


def test_bundles_are_zipped_under_content_hash_names():
    archive = blocks("data", "archive_file")["bundle"]
    assert archive["output_file_mode"] == "0644"
    obj = blocks("resource", "google_storage_bucket_object")["bundle"]
    assert "output_md5" in obj["name"] and "timestamp" not in str(obj)
