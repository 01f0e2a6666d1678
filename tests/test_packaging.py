"""The project is an installable package: pyproject.toml names its packages, and `make venv`
installs it in editable mode, so they import from this checkout wherever Python starts."""

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from local.functions import REPO

NOT_PACKAGES = {"functions", "tests"}  # deploy bundles' main.py files; the suite itself


def declared_patterns() -> list[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return config["tool"]["setuptools"]["packages"]["find"]["include"]


def test_every_folder_of_python_but_functions_and_tests_is_a_declared_package():
    folders = {
        path.name
        for path in REPO.iterdir()
        if path.is_dir() and not path.name.startswith(".") and any(path.rglob("*.py"))
    }
    declared = {pattern.rstrip("*") for pattern in declared_patterns()}
    assert folders - NOT_PACKAGES - {"build"} == declared


def test_the_installed_project_imports_from_this_checkout_from_any_folder(tmp_path):
    assert metadata.distribution("jobqueue").version == "0.1.0"
    script = "import shared.core.db, local.stack, client.api, bench.run; print(shared.core.db.__file__)"
    found = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert Path(found.stdout.strip()) == REPO / "shared" / "core" / "db" / "__init__.py"
