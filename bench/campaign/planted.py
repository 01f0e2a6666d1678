"""The campaign with a bug planted in a copy of the tree (never in this one): it must fail,
or the campaign shows nothing."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from local import reaper
from local.stack import REPO

REPORT = REPO / "build" / "chaos.json"
CHECKS_FAILED = 3  # distinct from a crash (1), so a planted run can tell "caught" from "broke"

# The bugs the campaign must catch: (file, the fenced text, the text planted instead).
PLANTS = {
    # A claim that takes a job whatever its status: a duplicate or late delivery runs it again.
    "claim-ignores-status": (
        "shared/core/sql/claim_named_job.sql",
        "AND job_status = 'queued' AND run_at <= now()",
        "AND run_at <= now()",
    ),
    # A completion without its lease: a zombie (a frozen instance's run, swept and claimed
    # again elsewhere) may complete the job over the newer attempt. Caught only when such a
    # zombie reaches its completion before it notices the lost lease, which is a race.
    "unfenced-complete": (
        "shared/core/sql/complete_job.sql",
        "AND worker_token = CAST(:token AS uuid)",
        "AND CAST(:token AS uuid) IS NOT NULL",
    ),
}


def planted_run(plant: str, argv: list[str]) -> int:
    """The campaign from a copy of the tree with one bug planted: 0 when its checks caught
    the bug (the campaign can fail), 1 when they passed it, or the run broke."""
    path, fenced, unfenced = PLANTS[plant]
    with tempfile.TemporaryDirectory(prefix="jobqueue-planted-") as folder:
        copy = Path(folder) / "tree"
        shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".git", ".venv*", "build", ".local", "node_modules"))
        target = copy / path
        text = target.read_text()
        if fenced not in text:
            raise SystemExit(f"cannot plant {plant}: {path} no longer holds {fenced!r}")
        target.write_text(text.replace(fenced, unfenced))
        os.chmod(copy, 0o755)
        print(f"planted {plant} in a copy of the tree: {path}", flush=True)
        command = [sys.executable, "-m", "bench.campaign", *argv]
        command += ["--report", str(REPORT.with_name(f"chaos-{plant}.json"))]
        returncode = reaper.run_tied(command, cwd=copy, env={**os.environ, "PYTHONPATH": str(copy)})
    if returncode == CHECKS_FAILED:
        print(f"the planted bug ({plant}) was caught: the campaign can fail")
        return 0
    print(f"the planted bug ({plant}) was NOT caught (exit {returncode})", file=sys.stderr)
    return 1
