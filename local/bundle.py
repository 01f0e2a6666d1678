"""make bundles: one deployable folder per function under build/, as Cloud Build expects it.

    build/<name>/main.py            the function's entry module
    build/<name>/shared/            a copy of the core (copied, never a symlink: archive_file
                                    does not follow them, and only this folder is uploaded)
    build/<name>/requirements.txt   the pinned runtime requirements
    build/<name>/clients/js/        the JavaScript client's module, which the pages load

No tests, caches or symlinks go in.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from local.functions import FUNCTIONS

REPO = Path(__file__).resolve().parent.parent
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache")


def build_bundle(name: str, out: Path) -> Path:
    target = out / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copy2(REPO / "functions" / name / "main.py", target / "main.py")
    shutil.copytree(REPO / "shared", target / "shared", ignore=SKIP, symlinks=False)
    shutil.copy2(REPO / "requirements.txt", target / "requirements.txt")
    (target / "clients" / "js").mkdir(parents=True)
    shutil.copy2(REPO / "clients" / "js" / "jobqueue.js", target / "clients" / "js" / "jobqueue.js")
    return target


def build_all(out: Path = REPO / "build") -> list[Path]:
    return [build_bundle(name, out) for name in FUNCTIONS]


if __name__ == "__main__":
    for bundle in build_all(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "build"):
        print(f"built {bundle.relative_to(REPO) if bundle.is_relative_to(REPO) else bundle}")
