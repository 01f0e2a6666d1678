"""The status page in headless Chromium while the Gemini writer streams (through the local
emulator of Gemini's endpoint): the preview grows in place, then the newsletter replaces it.
Needs Debian's chromium and Playwright (`make browser-test`); skipped elsewhere, saying why."""

import itertools
import threading
import time

import httpx
import pytest

from local.gemini_emulator import Script
from local.stack import DEV_TOKEN
from tests.browser import (  # noqa: F401 (chromium_browser: the browser fixture)
    chromium_browser,
    expect,
    skip_without_a_browser,
    stack_on_a_copy,
)

pytestmark = pytest.mark.browser
skip_without_a_browser()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, admin_url, template_database):
    extra = {"CANCEL_CHECK_SECONDS": "0.1", "STREAM_KEEPALIVE_SECONDS": "2"}
    yield from stack_on_a_copy(
        admin_url, template_database, "jobqueue_writer_page", tmp_path_factory.mktemp("logs"),
        extra_env=extra, gemini_port=0,
    )  # fmt: skip


def test_the_preview_grows_while_the_model_writes(stack, browser):
    stack.gemini.script(Script(delay=0.12, chunk_chars=10))  # about ten seconds of chunks
    body = {
        "dateRange": {"from": "2025-01-01", "to": "2025-01-07"},
        "selectedSources": [source.id for source in stack.demo_sources],
        "outputFormat": "markdown",
    }
    job = httpx.post(stack.url("enqueue"), json=body, headers={"Authorization": f"Bearer {DEV_TOKEN}"}).json()
    page = browser.new_page()
    try:
        page.goto(f"{stack.url('status')}?id={job['id']}&stay=1")
        expect(page.locator("#connection")).to_have_attribute("data-state", "connected")
        worker = threading.Thread(
            target=lambda: httpx.post(stack.url("process"), json={"id": job["id"]}, timeout=120), daemon=True
        )
        worker.start()
        seen: list[str] = []
        deadline = time.monotonic() + 60
        while page.locator("#result-section").is_hidden() and time.monotonic() < deadline:
            shown = page.locator("#preview pre")
            text = shown.text_content() if shown.count() else ""
            if "Written by" in text and (not seen or text != seen[-1]):
                seen.append(text)
            time.sleep(0.05)
        worker.join(30)

        assert len(seen) >= 3, seen  # it grew, more than once, while the model wrote
        assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(seen))
        assert "in short:" in seen[-1]
        expect(page.locator("#result pre")).to_contain_text("in short:")
        assert stack.gemini.calls[-1].ended == "complete"
    finally:
        page.close()
