"""The JavaScript client (clients/js/): its Node tests against a local stack, and its type
declarations checked by tsc.

Needs node (and npm, for TypeScript): `make test` installs them with apt-get when run as
root and they are missing; elsewhere these tests are skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from local.stack import DEV_TOKEN, Stack

CLIENT = Path(__file__).resolve().parent.parent / "clients" / "js"
NODE = shutil.which("node")
NPM = shutil.which("npm")
TSC = CLIENT / "node_modules" / ".bin" / "tsc"
OTHER_TOKEN = "other-tenant-token"  # a second tenant's (API_TOKENS)

pytestmark = pytest.mark.skipif(
    NODE is None, reason="JavaScript client tests skipped: no node on PATH (install Node 18+; make test does as root)"
)


def typescript() -> Path:
    if not TSC.exists():
        if NPM is None:
            pytest.skip("type check skipped: no npm to install TypeScript (make test installs it as root)")
        installed = subprocess.run(
            [NPM, "ci", "--no-audit", "--no-fund"], cwd=CLIENT, capture_output=True, text=True, timeout=300
        )
        if installed.returncode != 0:
            pytest.skip(f"type check skipped: npm could not install TypeScript: {installed.stderr[-300:]}")
    return TSC


def test_the_node_tests_pass_against_a_local_stack(database_url, tmp_path):
    tenants = {"API_TOKENS": f"other={OTHER_TOKEN}"}
    with Stack.on_free_ports(database_url=database_url, scheduler=False, log_dir=tmp_path, extra_env=tenants) as stack:
        env = {
            **os.environ,
            "JOBQUEUE_ENQUEUE_URL": stack.url("enqueue"),
            "JOBQUEUE_STATUS_URL": stack.url("status"),
            "JOBQUEUE_CANCEL_URL": stack.url("cancel"),
            "JOBQUEUE_PROCESS_URL": stack.url("process"),
            "JOBQUEUE_TOKEN": DEV_TOKEN,
            "JOBQUEUE_OTHER_TOKEN": OTHER_TOKEN,
        }
        done = subprocess.run(
            [NODE, "--test", "--test-reporter=spec", "test/"],
            cwd=CLIENT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-4000:]
    assert "ℹ skipped 0" in report and "ℹ fail 0" in report, report[-2000:]


def test_the_type_declarations_describe_the_module_as_it_is_called():
    checked = subprocess.run(
        [str(typescript()), "-p", "test/tsconfig.json"], cwd=CLIENT, capture_output=True, text=True, timeout=300
    )
    assert checked.returncode == 0, checked.stdout[-3000:]


def test_the_type_check_catches_a_wrong_call(tmp_path):
    """The check can fail: a call the declarations forbid is an error."""
    wrong = CLIENT / "test" / "planted_wrong_call.ts"
    wrong.write_text(
        'import { createClient } from "@jobqueue/client";\n'
        "const client = createClient({ statusUrl: 5 });\n"
        'client.follow("id", { onEvent: (event: number) => event });\n'
    )
    config = tmp_path / "tsconfig.json"
    config.write_text(
        '{"extends": "%s", "files": ["%s"]}' % (CLIENT / "test" / "tsconfig.json", wrong)  # noqa: UP031
    )
    try:
        checked = subprocess.run(
            [str(typescript()), "-p", str(config)], cwd=CLIENT, capture_output=True, text=True, timeout=300
        )
    finally:
        wrong.unlink()
    assert checked.returncode != 0
    # Both lines: a number for a URL, and a handler that does not take a StreamEvent.
    assert "planted_wrong_call.ts(2," in checked.stdout and "planted_wrong_call.ts(3," in checked.stdout
