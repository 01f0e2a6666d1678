"""What the browser tests share: the skip when Playwright or chromium is missing, one
headless Chromium per module, and a local stack on a copy of the test database.

Test modules import from here (`from tests.browser import ...`); importing
`chromium_browser` gives the module the `browser` fixture. Needs Debian's chromium and Playwright (`make browser-test`).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from local.stack import REPO, Stack
from tests.support import admin_session, scratch_name, with_database

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SHOTS = REPO / "build" / "screenshots"
# Without the background-networking flags, Chromium's own calls to Google are refused by this
# machine's closed network, many at a time.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # pragma: no cover (depends on the machine)
    expect = sync_playwright = None


def skip_without_a_browser() -> None:
    """Skip the calling module, saying why, when Playwright or chromium is missing."""
    if sync_playwright is None or CHROMIUM is None:
        missing = "Playwright is not installed" if sync_playwright is None else "no chromium on PATH"
        pytest.skip(
            f"browser tests skipped: {missing}; run `make browser-test` to install and run them",
            allow_module_level=True,
        )


@pytest.fixture(scope="module", name="browser")
def chromium_browser():
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def stack_on_a_copy(admin_url: str, template_database: str, name: str, log_dir, **stack_fields) -> Iterator[Stack]:
    """A started local stack on database `name` (made this process's own), a fresh copy of the
    migrated template."""
    name = scratch_name(name)
    admin = admin_session(admin_url)
    admin.run_sql(f"DROP DATABASE IF EXISTS {name}")
    admin.run_sql(f"CREATE DATABASE {name} TEMPLATE {template_database}")
    running = Stack.on_free_ports(
        database_url=with_database(admin_url, name), scheduler=False, log_dir=log_dir, **stack_fields
    ).start()
    try:
        yield running
    finally:
        running.stop()
        admin.run_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.close()
