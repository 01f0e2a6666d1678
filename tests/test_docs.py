"""The documentation: the site (mkdocs.yml over docs/) builds with --strict, and the strict
build fails on a link to a page or a heading that does not exist; the README stays a
newcomer's page whose links resolve and whose prose holds no figure that changes every run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from local.functions import REPO

README = REPO / "README.md"


def build_site(root: Path, site: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml"), "-d", str(site)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_the_docs_site_builds_strict_with_every_page(tmp_path):
    done = build_site(REPO, tmp_path / "site")
    assert done.returncode == 0, done.stderr
    site = tmp_path / "site"
    for page in (REPO / "docs").glob("*.md"):
        built = site / "index.html" if page.stem == "index" else site / page.stem / "index.html"
        assert built.is_file(), f"docs/{page.name} is not in the site"
    assert (site / "openapi.yaml").is_file()


@pytest.mark.parametrize(
    ("planted", "named"),
    [
        ("[a page](no-such-page.md)", "no-such-page.md"),
        ("[a heading](benchmarks.md#no-such-heading)", "no-such-heading"),
    ],
    ids=["page", "heading"],
)
def test_a_broken_link_fails_the_strict_build(tmp_path, planted, named):
    root = tmp_path / "tree"
    shutil.copytree(REPO / "docs", root / "docs")
    shutil.copy(REPO / "mkdocs.yml", root / "mkdocs.yml")
    index = root / "docs" / "index.md"
    index.write_text(index.read_text() + f"\nSee {planted}.\n")
    done = build_site(root, tmp_path / "site")
    assert done.returncode != 0
    assert named in done.stderr + done.stdout


def readme_links() -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", README.read_text())


def test_the_readme_is_a_newcomers_page_whose_links_resolve():
    lines = README.read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: the manual goes in docs/"
    local = [link for link in readme_links() if not re.match(r"[a-z]+:", link)]
    assert local, "the README links to the manual"
    for link in local:
        assert (REPO / link.split("#")[0]).exists(), f"README.md links to {link}, which does not exist"


def test_the_readme_prose_holds_no_test_count_or_time():
    """Those change every run: they live in build/junit.xml (make test), not in prose."""
    prose = re.sub(r"```.*?```", "", README.read_text(), flags=re.S)
    counts = r"\b\d[\d,]* (?:tests?|passed|skipped|failed)\b"
    times = r"\bin (?:about )?\d+(?:\.\d+)? ?(?:s|min|minutes|seconds)\b|\b\d+ min \d+ s\b"
    figures = re.findall(f"{counts}|{times}", prose)
    assert not figures, f"figures that change every run in README.md: {figures}"
