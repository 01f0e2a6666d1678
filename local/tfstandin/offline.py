"""make plan-offline: Terraform itself inits, validates, plans, applies and re-plans a copy of an
infra folder against the stand-in providers, offline. Exit status 0 only when every step passed
and the second plan shows no changes; otherwise Terraform's own messages and a line naming the
step.

    python -m local.tfstandin.offline [--infra DIR] [--var-file FILE] [--var NAME=VALUE ...]

The copy leaves out state, plans, lock files and tfvars (except the example), so nothing of a
real deploy is read or written; the stand-ins' hashes go only into the copy's lock file. The
bundles archive_file zips are small stand-in folders, one per folder in functions/.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from local.tfstandin.attach import attached
from local.tfstandin.mirror import REPO, environment

IGNORED = (".terraform", "*.tfstate*", ".terraform.lock.hcl", "backend.tf", ".tfplan", ".bundles", "*.tfvars")


class StepFailed(Exception):
    """A Terraform step failed; the message names it."""


def copy_infra(source: Path, into: Path) -> Path:
    target = into / "infra"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*IGNORED))
    return target


def stand_in_bundles(into: Path) -> Path:
    """One folder per function with a main.py, as `make bundles` lays them out (archive_file zips them)."""
    build = into / "build"
    for function in sorted(p.name for p in (REPO / "functions").iterdir() if (p / "main.py").is_file()):
        (build / function).mkdir(parents=True, exist_ok=True)
        (build / function / "main.py").write_text(f"# stand-in bundle of {function}\n")
    return build


class Run:
    """Terraform in a working copy, with the stand-ins' CLI config and simulated cloud."""

    def __init__(self, folder: Path, scratch: Path, echo: bool = True):
        self.folder = folder
        self.env = environment(scratch / "terraform", scratch / "world.json")
        self.echo = echo

    @contextlib.contextmanager
    def attached(self) -> Iterator[Run]:
        """Meanwhile, every command reattaches to stand-ins started once (attach.py), not its own."""
        plain = self.env
        with attached(plain, self.folder) as reattaching:
            self.env = reattaching
            try:
                yield self
            finally:
                self.env = plain

    def __call__(self, *args: str, ok_codes: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
        command = ["terraform", f"-chdir={self.folder}", *args]
        done = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=600)
        if self.echo:
            sys.stdout.write(done.stdout)
            sys.stderr.write(done.stderr)
        if done.returncode not in ok_codes:
            raise StepFailed(f"`terraform {' '.join(args)}` failed (exit status {done.returncode}):\n{done.stderr}")
        return done


def variables(var_file: Path | None, assignments: list[str], bundle_dir: Path) -> list[str]:
    args = [f"-var-file={var_file.resolve()}"] if var_file else []
    args += [f"-var={a}" for a in assignments]
    return [*args, f"-var=bundle_dir={bundle_dir}"]


def plan_apply_replan(run: Run, var_args: list[str]) -> None:
    run("init", "-input=false", "-no-color")
    run("validate", "-no-color")
    run("plan", "-input=false", "-no-color", "-out=.tfplan", *var_args)
    run("apply", "-input=false", "-no-color", ".tfplan")
    second = run("plan", "-input=false", "-no-color", "-detailed-exitcode", *var_args, ok_codes=(0, 2))
    if second.returncode == 2:
        raise StepFailed("the second plan after apply is not clean: it would change what apply just made")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--infra", type=Path, default=REPO / "infra")
    parser.add_argument("--var-file", type=Path, default=REPO / "infra" / "terraform.tfvars.example")
    parser.add_argument("--var", action="append", default=[], help="NAME=VALUE, as terraform's -var")
    parser.add_argument("--quiet", action="store_true", help="print Terraform's output only when a step fails")
    args = parser.parse_args(argv)
    if shutil.which("terraform") is None:
        print("terraform is not on PATH (install Terraform 1.9 or newer)", file=sys.stderr)
        return 1
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="plan-offline-") as tmp:
        scratch = Path(tmp)
        folder = copy_infra(args.infra, scratch)
        run = Run(folder, scratch, echo=not args.quiet)
        try:
            with run.attached():
                plan_apply_replan(run, variables(args.var_file, args.var, stand_in_bundles(scratch)))
        except StepFailed as failed:
            print(f"plan-offline: {args.infra}: {failed}", file=sys.stderr)
            return 1
    print(
        f"plan-offline: {args.infra}: init, validate, plan, apply and a clean second plan ({time.monotonic() - started:.0f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
