"""Each deploy bundle tested the way Cloud Build uses it: unpacked into an empty folder, its
requirements installed into a fresh virtual environment, functions-framework started from
that folder alone (by the one launcher, local/launcher.py, with the fresh environment's
Python), and a real request served against the test database."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from local.bundle import FUNCTIONS, build_all
from local.launcher import bind_port, start_function

TOKEN = "bundle-token"


def zip_like_archive_file(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            archive.write(path, path.relative_to(folder))
    return target


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    folders = {}
    for bundle in build_all(root / "build"):
        archive = zip_like_archive_file(bundle, root / f"{bundle.name}.zip")
        target = root / "deployed" / bundle.name
        target.mkdir(parents=True)
        with zipfile.ZipFile(archive) as opened:
            opened.extractall(target)
        folders[bundle.name] = target
    return folders


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, unpacked) -> Path:
    requirements = {name: (folder / "requirements.txt").read_text() for name, folder in unpacked.items()}
    assert len(set(requirements.values())) == 1, "every bundle pins the same runtime requirements"
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # --no-compile: what is checked is that the pinned requirements install and serve; byte-
    # compiling every installed module up front was a quarter of the install's CPU time.
    done = subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--no-compile",
            "-r",
            str(unpacked["enqueue"] / "requirements.txt"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return venv


def test_bundles_hold_only_what_runs(unpacked):
    for name, folder in unpacked.items():
        names = {path.relative_to(folder).as_posix() for path in folder.rglob("*")}
        assert {
            "main.py",
            "requirements.txt",
            "shared/core/db/session.py",
            "shared/core/sql/claim_next_job.sql",
            "shared/core/sql/parts/start_attempt.sql",  # the claims include it when loaded
        } <= names, name
        assert not any(
            part in ("tests", "__pycache__", ".venv", "local", "client") for n in names for part in n.split("/")
        )
        assert not any(path.is_symlink() for path in folder.rglob("*"))


def test_each_bundle_serves_a_real_request_from_a_fresh_environment(unpacked, fresh_venv, database_url, tmp_path):
    sockets = {name: bind_port() for name in FUNCTIONS}
    ports = {name: sock.getsockname()[1] for name, sock in sockets.items()}
    env = {
        "PATH": f"{fresh_venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "DATABASE_URL": database_url,
        "API_TOKEN": TOKEN,
        "ENQUEUE_KINDS": "newsletter,demo",
        "STATUS_URL": f"http://127.0.0.1:{ports['status']}/",
    }
    servers, logs = {}, []
    try:
        for name, folder in unpacked.items():
            logs.append(open(tmp_path / f"{name}.log", "wb"))
            servers[name] = start_function(
                name, env, sock=sockets[name], bundle=folder, python=fresh_venv / "bin" / "python", output=logs[-1]
            )
        for server in servers.values():
            server.wait_until_serving()
        url = {name: f"http://127.0.0.1:{port}/" for name, port in ports.items()}
        auth = {"Authorization": f"Bearer {TOKEN}"}

        queued = httpx.post(
            url["enqueue"], json={"kind": "demo", "steps": 1, "stepSeconds": 0}, headers=auth, timeout=30
        )
        assert queued.status_code == 202, queued.text
        job_id = queued.json()["id"]
        ran = httpx.post(url["process"], timeout=60)
        assert ran.status_code == 200 and ran.json()["jobStatus"] == "completed", ran.text
        status = httpx.get(url["status"], params={"id": job_id}, timeout=30)
        assert status.status_code == 200 and status.json()["logs"][-1]["message"] == "Step 1 of 1 done"
        module = httpx.get(url["status"], params={"asset": "client.js"}, timeout=30)  # the pages' client, bundled
        assert module.status_code == 200 and "export function createClient" in module.text
        cancelled = httpx.post(url["cancel"], json={"generationId": job_id}, headers=auth, timeout=30)
        assert cancelled.status_code == 409  # it finished: nothing to cancel
        swept = httpx.post(url["sweep"], timeout=30)
        assert swept.status_code == 200 and swept.json()["failed"] == 0
    finally:
        for server in servers.values():
            server.stop()
        for log in logs:
            log.close()
    for name in FUNCTIONS:  # nothing imported from outside the bundle
        assert "Traceback" not in (tmp_path / f"{name}.log").read_text(), name
    assert not os.environ.get("PYTHONPATH")
