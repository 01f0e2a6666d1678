"""The seed's whole user journey in a real headless Chromium, against the functions running
locally with the Cloud Tasks emulator (so a job starts as soon as it is queued): open the
dashboard, start a newsletter, watch it, be taken to the result, find it in the archive,
watch another job in "In Progress" and cancel it there; a second tenant sees none of it.

Needs Debian's chromium and Playwright (`make browser-test`); skipped with the reason
elsewhere. Screenshots of each page go to build/screenshots/.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from local.postgres import free_port
from local.stack import DEV_TOKEN
from tests.browser import (  # noqa: F401 (chromium_browser: the browser fixture)
    SHOTS,
    chromium_browser,
    expect,
    skip_without_a_browser,
    stack_on_a_copy,
)

pytestmark = pytest.mark.browser
OTHER_TOKEN = "other-tenant-token"
skip_without_a_browser()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, admin_url, template_database):
    extra = {"CANCEL_CHECK_SECONDS": "0.1", "STREAM_KEEPALIVE_SECONDS": "2", "API_TOKENS": f"other={OTHER_TOKEN}"}
    yield from stack_on_a_copy(
        admin_url, template_database, "jobqueue_journey", tmp_path_factory.mktemp("logs"),
        extra_env=extra, tasks_port=free_port(),
    )  # fmt: skip


@pytest.fixture
def new_page(browser):
    """new_page() -> a phone-sized page; none of them may break the pages' policy."""
    contexts, errors = [], []

    def make():
        context = browser.new_context(viewport={"width": 420, "height": 900})
        contexts.append(context)
        opened = context.new_page()
        opened.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        opened.on("pageerror", lambda error: errors.append(str(error)))
        return opened

    yield make
    for context in contexts:
        context.close()
    assert not [e for e in errors if "Content Security Policy" in e or "Refused" in e], errors


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def no_sideways_scrolling(page) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= 420, "no sideways scrolling on a phone"


def open_archive(page, stack, token: str) -> None:
    page.goto(f"{stack.url('status')}?view=archive")
    page.get_by_label("API token").fill(token)
    page.keyboard.press("Enter")
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected", timeout=10_000)
    expect(page.get_by_label("API token")).to_be_hidden()


def jobs_of(stack, token: str) -> list[dict]:
    response = httpx.get(
        f"{stack.url('status')}?list=1&limit=100", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()["jobs"]


def wait_for(condition, timeout: float = 15, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.1)


def test_the_dashboard_shows_the_functions_errors_beside_their_fields(stack, new_page):
    page = new_page()
    page.goto(stack.url("enqueue"))
    expect(page.get_by_role("heading", name="Generate a newsletter")).to_be_visible()
    expect(page.locator('link[rel="icon"]')).to_have_attribute("href", "data:,")  # no favicon 404
    names = [source.name for source in stack.demo_sources]
    for name in names:
        expect(page.get_by_label(name)).to_be_checked()
    page.get_by_label("From", exact=True).fill("2025-01-09")
    page.get_by_label("To", exact=True).fill("2025-01-02")
    for name in names:
        page.get_by_label(name).uncheck()
    page.get_by_role("button", name="Submit for generation").click()
    # No token yet: the function refuses, and the page asks for it beside its field.
    expect(page.locator('[data-error-for="token"]')).to_contain_text("A valid API token is needed")
    expect(page.get_by_label("API token")).to_be_focused()
    page.get_by_label("API token").fill(DEV_TOKEN)
    page.keyboard.press("Enter")
    # In plain words (issue 23), not the API's ("from must not be after to").
    expect(page.locator('[data-error-for="dateRange"]')).to_have_text(
        "The start date is after the end date: choose a start on or before the end."
    )
    expect(page.locator('[data-error-for="selectedSources"]')).to_have_text("Choose at least one source.")
    expect(page.locator('[data-error-for="token"]')).to_be_empty()
    expect(page.get_by_label("From", exact=True)).to_have_attribute("aria-invalid", "true")
    no_sideways_scrolling(page)
    shot(page, "11-dashboard-errors")
    assert jobs_of(stack, DEV_TOKEN) == [], "nothing was queued"


def test_a_person_starts_a_newsletter_watches_it_finds_it_in_the_archive_and_cancels_another(stack, new_page):  # noqa: PLR0915
    page = new_page()
    page.goto(stack.url("enqueue"))
    page.get_by_label("From", exact=True).fill("2025-01-01")
    page.get_by_label("To", exact=True).fill("2025-01-07")
    page.get_by_label("HTML").check()
    page.get_by_label("API token").fill(DEV_TOKEN)
    shot(page, "10-dashboard")
    page.get_by_role("button", name="Submit for generation").click()

    # Taken to the job's status page, which follows it to the end ...
    expect(page).to_have_url(status_page_url(stack), timeout=15_000)  # the token handed over is gone from the address
    job_id = page.url.split("id=", 1)[1]
    expect(page.get_by_role("heading", name="Newsletter generation")).to_be_visible()
    expect(page.locator("#job-status")).to_have_text("completed", timeout=20_000)
    expect(page.get_by_role("link", name="Open the newsletter")).to_be_visible()
    expect(page.locator("#redirect-note")).to_have_text("Opening it in 2 s…")
    shot(page, "12-status-completed")
    # ... and, 2 s later, to the newsletter's own page.
    document_url = f"{stack.url('status')}?id={job_id}&view=document"
    page.wait_for_url(document_url, timeout=10_000)
    # The newsletter's page is a sandboxed document (no scripts): Playwright cannot look
    # inside one it was navigated to, so a picture of it, and its content over HTTP.
    page.screenshot(path=str(SHOTS / "13-result.png"))
    assert "<h1>Newsletter for January 1–7, 2025</h1>" in httpx.get(document_url).text
    # Its way back (issue 23), at the top of its body (Playwright stalls inside a top-level
    # sandboxed document, hence over HTTP): the dashboard and the archive.
    result_page = httpx.get(document_url).text
    assert f'<a href="{stack.url("enqueue")}">Generate a newsletter</a>' in result_page
    assert '<a href="?view=archive">All newsletters</a>' in result_page

    # The archive lists it, opening its result page.
    archive = new_page()
    open_archive(archive, stack, DEV_TOKEN)
    finished = archive.locator("#finished li")
    expect(finished).to_have_count(1)
    expect(finished.first).to_contain_text("2025-01-01 to 2025-01-07 · HTML · finished")
    names = ", ".join(source.name for source in stack.demo_sources)
    expect(finished.first.locator(".sources")).to_have_text(f"Sources: {names}")  # issue 23
    link = finished.first.get_by_role("link", name="Newsletter for January 1–7, 2025")
    expect(link).to_have_attribute("href", f"?id={job_id}&view=document")
    expect(archive.locator("#no-progress")).to_be_visible()
    no_sideways_scrolling(archive)
    shot(archive, "14-archive")

    # Another job starts: it appears in In Progress, live, and is cancelled from there.
    queued = httpx.post(
        stack.url("enqueue"),
        json={"kind": "demo", "steps": 200, "stepSeconds": 0.2},
        headers={"Authorization": f"Bearer {DEV_TOKEN}"},
    ).json()
    card = archive.locator(f'#in-progress li[data-id="{queued["id"]}"]')
    expect(card).to_be_visible(timeout=10_000)
    expect(card.locator(".step")).to_have_text("Processing", timeout=10_000)
    expect(card.locator("progress")).not_to_have_attribute("value", "0", timeout=10_000)
    expect(card.get_by_role("link", name="View status")).to_have_attribute("href", f"?id={queued['id']}")
    shot(archive, "15-archive-in-progress")
    card.get_by_role("button", name="Cancel").click()
    expect(archive.get_by_role("dialog")).to_contain_text(queued["id"])
    expect(archive.get_by_role("button", name="Keep running")).to_be_focused()
    shot(archive, "16-archive-cancel-dialog")
    archive.get_by_role("button", name="Cancel job").click()
    expect(card).to_have_count(0, timeout=10_000)
    expect(archive.locator("#no-progress")).to_be_visible()
    wait_for(
        lambda: httpx.get(f"{stack.url('status')}?id={queued['id']}").json()["jobStatus"] == "cancelled",
        what="the cancel",
    )
    shot(archive, "17-archive-cancelled")

    # A cancelled job can be re-run from the archive: a new job, naming the original.
    stopped = archive.locator(f'#stopped li[data-id="{queued["id"]}"]')
    expect(stopped).to_contain_text("cancelled")
    stopped.get_by_role("button", name="Re-run").click()
    expect(stopped.get_by_role("button", name="Re-run queued")).to_be_disabled()
    reruns = []
    wait_for(
        lambda: reruns.extend(j for j in jobs_of(stack, DEV_TOKEN) if j["rerunOf"] == queued["id"]) or reruns,
        what="the re-run",
    )
    expect(archive.locator(f'#in-progress li[data-id="{reruns[0]["id"]}"]')).to_be_visible(timeout=10_000)
    shot(archive, "19-archive-rerun")
    httpx.post(stack.url("cancel"), json={"id": reruns[0]["id"]}, headers={"Authorization": f"Bearer {DEV_TOKEN}"})


def status_page_url(stack) -> re.Pattern:
    return re.compile(re.escape(stack.url("status")) + r"\?id=[0-9a-f-]{36}$")


def test_the_token_is_typed_once_per_tab_and_can_be_forgotten(stack, new_page):
    """Issue 23: typed on the dashboard, handed to the status page's origin in the fragment
    (gone from the address bar at once), kept in that origin's sessionStorage for the tab:
    the archive and Cancel do not ask again; "Forget my token" drops it."""
    page = new_page()
    page.goto(stack.url("enqueue"))
    page.get_by_label("From", exact=True).fill("2025-01-01")
    page.get_by_label("To", exact=True).fill("2025-01-07")
    page.get_by_label("API token").fill(DEV_TOKEN)
    page.get_by_role("button", name="Submit for generation").click()
    expect(page).to_have_url(status_page_url(stack), timeout=15_000)
    job_id = page.url.split("id=", 1)[1]
    expect(page.locator("#token-held")).to_be_visible()

    page.goto(f"{stack.url('status')}?view=archive")  # the same tab: no token asked
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected", timeout=10_000)
    expect(page.get_by_label("API token")).to_be_hidden()
    expect(page.locator(f'#finished li[data-id="{job_id}"]')).to_be_visible(timeout=15_000)

    auth = {"Authorization": f"Bearer {DEV_TOKEN}"}
    running = httpx.post(stack.url("enqueue"), json={"kind": "demo", "steps": 200, "stepSeconds": 0.2}, headers=auth)
    page.goto(f"{stack.url('status')}?id={running.json()['id']}")
    expect(page.locator("#connection")).to_have_attribute("data-state", "connected", timeout=10_000)
    page.get_by_role("button", name="Cancel job").click()  # a demo job; no dialog: the tab holds the token
    expect(page.locator("#job-status")).to_have_text("cancelled", timeout=10_000)
    expect(page.get_by_role("dialog")).to_be_hidden()

    page.goto(f"{stack.url('status')}?view=archive")
    page.get_by_role("button", name="Forget my token").click()
    expect(page.get_by_label("API token")).to_be_visible()
    page.reload()
    expect(page.get_by_label("API token")).to_be_visible()
    expect(page.locator("#progress-section")).to_be_hidden()
    page.goto(stack.url("enqueue"))  # the dashboard's origin kept its own, until forgotten there
    expect(page.get_by_text("Using the token you entered earlier in this tab")).to_be_visible()
    page.get_by_role("button", name="Forget my token").click()
    expect(page.locator("#token-held")).to_be_hidden()


def test_a_second_tenant_sees_none_of_the_first_tenants_jobs(stack, new_page):
    auth = {"Authorization": f"Bearer {DEV_TOKEN}"}
    sources = [source.id for source in stack.demo_sources]
    body = {"dateRange": {"from": "2025-01-01", "to": "2025-01-07"}, "selectedSources": sources}
    newsletter = httpx.post(stack.url("enqueue"), json=body, headers=auth).json()
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    waiting = httpx.post(stack.url("enqueue"), json={"kind": "demo", "runAt": later}, headers=auth).json()
    wait_for(
        lambda: httpx.get(f"{stack.url('status')}?id={newsletter['id']}").json()["jobStatus"] == "completed",
        what="the first tenant's newsletter",
    )
    # The first tenant sees both: its newsletter finished, its waiting job in progress ...
    first = new_page()
    open_archive(first, stack, DEV_TOKEN)
    expect(first.locator(f'#finished li[data-id="{newsletter["id"]}"]')).to_be_visible()
    expect(first.locator(f'#in-progress li[data-id="{waiting["id"]}"]')).to_be_visible()
    # ... the second tenant sees neither, in the page or from the API.
    page = new_page()
    open_archive(page, stack, OTHER_TOKEN)
    expect(page.locator("#no-finished")).to_be_visible()
    expect(page.locator("#no-progress")).to_be_visible()
    expect(page.locator("#finished li, #in-progress li")).to_have_count(0)
    shot(page, "18-archive-second-tenant")
    assert jobs_of(stack, OTHER_TOKEN) == []
    httpx.post(stack.url("cancel"), json={"id": waiting["id"]}, headers=auth)


def test_the_archive_refuses_a_wrong_token_beside_its_field(stack, new_page):
    page = new_page()
    page.goto(f"{stack.url('status')}?view=archive")
    page.get_by_label("API token").fill("not-a-token")
    page.get_by_role("button", name="Show my jobs").click()
    expect(page.locator("#error-token")).to_contain_text("That token was refused")
    expect(page.get_by_label("API token")).to_be_focused()
    expect(page.locator("#progress-section")).to_be_hidden()
    expect(page.locator('link[rel="icon"]')).to_have_attribute("href", "data:,")  # no favicon 404


def test_in_progress_and_stopped_cards_say_what_was_asked_for(stack, new_page):
    """Issue 23: In Progress and Failed or cancelled cards showed a bare id; they show the date
    range, the format and the sources, as a finished card does."""
    auth = {"Authorization": f"Bearer {DEV_TOKEN}"}
    first, second = stack.demo_sources[:2]
    body = {
        "dateRange": {"from": "2025-01-02", "to": "2025-01-05"},
        "selectedSources": [first.id, second.id],
        "outputFormat": "markdown",
        "runAt": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
    }
    waiting = httpx.post(stack.url("enqueue"), json=body, headers=auth).json()
    page = new_page()
    open_archive(page, stack, DEV_TOKEN)
    asked = f"2025-01-02 to 2025-01-05 · Markdown · {first.name}, {second.name}"
    card = page.locator(f'#in-progress li[data-id="{waiting["id"]}"]')
    expect(card.locator(".request")).to_have_text(asked)
    httpx.post(stack.url("cancel"), json={"id": waiting["id"]}, headers=auth)
    stopped = page.locator(f'#stopped li[data-id="{waiting["id"]}"]')
    expect(stopped.locator(".request")).to_have_text(asked, timeout=10_000)
    no_sideways_scrolling(page)
    shot(page, "22-archive-cards-say-what-was-asked")


def test_a_kinds_form_and_cards_are_what_its_registration_declares(stack, new_page):
    """Issue 24: the demo kind's form (its fields, bounds, words) and its cards' summary are
    declared in shared/kinds/demo/ alone; the dashboard, the archive and the status page
    render them, send its body, and show the function's problems beside its fields."""
    queued_before = {job["id"] for job in jobs_of(stack, DEV_TOKEN)}
    page = new_page()
    page.goto(stack.url("enqueue"))
    form = page.locator("#form-demo")
    expect(form.get_by_role("heading", name="Run a demo job")).to_be_visible()
    expect(form.get_by_label("Steps")).to_have_value("5")
    form.get_by_label("Steps").fill("5000")  # past the kind's bound: the function names the field
    page.get_by_label("API token").fill(DEV_TOKEN)  # the page's one token field, in the first form
    form.get_by_role("button", name="Run the demo").click()
    expect(form.locator('[data-error-for="steps"]')).to_have_text("must be a whole number from 0 to 1000")
    expect(form.get_by_label("Steps")).to_have_attribute("aria-invalid", "true")
    assert {job["id"] for job in jobs_of(stack, DEV_TOKEN)} == queued_before, "nothing was queued"

    form.get_by_label("Steps").fill("3")
    form.get_by_label("Seconds per step").fill("30")  # long enough to be seen in progress
    form.get_by_label("Note").fill("tuesday's run")  # a field added in shared/kinds/demo/ alone
    form.get_by_role("button", name="Run the demo").click()
    expect(page).to_have_url(status_page_url(stack), timeout=15_000)
    job_id = page.url.split("id=", 1)[1]
    expect(page.get_by_role("heading", level=1)).to_have_text("Demo")
    (job,) = [job for job in jobs_of(stack, DEV_TOKEN) if job["id"] == job_id]
    assert job["payload"] == {"steps": 3, "stepSeconds": 30, "failWith": "", "note": "tuesday's run"}

    archive = new_page()
    open_archive(archive, stack, DEV_TOKEN)
    card = archive.locator(f'#in-progress li[data-id="{job_id}"]')
    expect(card.get_by_role("heading")).to_contain_text("Demo · ")
    expect(card.locator(".request")).to_have_text("3 steps · 30 s each · tuesday's run")
    shot(archive, "23-archive-demo-card")
    httpx.post(stack.url("cancel"), json={"id": job_id}, headers={"Authorization": f"Bearer {DEV_TOKEN}"})
    expect(archive.locator(f'#stopped li[data-id="{job_id}"] .request')).to_have_text(
        "3 steps · 30 s each · tuesday's run"
    )
