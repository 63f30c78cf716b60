"""The pages in a real browser (Debian's chromium driven by Playwright): log in with a
token, filter the runs table (htmx swaps it in place), open a run, log out. Screenshots
are kept in $PIPETRAIL_TEST_ARTIFACTS (else the test's temporary folder)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from playwright.sync_api import Browser

    from tests.integration.server.conftest import Served

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.e2e]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser tests need Debian's chromium at {CHROMIUM}")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield launched
        launched.close()


def test_log_in_filter_runs_open_a_run_and_log_out(
    served: Served, live_server: str, browser: Browser, tmp_path: Path
) -> None:
    shots = Path(os.environ.get("PIPETRAIL_TEST_ARTIFACTS", tmp_path)) / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(base_url=live_server, viewport={"width": 1366, "height": 768})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto("/")
    assert page.get_by_role("heading", name="Log in first").is_visible()
    page.get_by_role("link", name="Log in with an API token").click()
    page.get_by_label("API token").fill(served.tokens["vic"])
    page.screenshot(path=str(shots / "1-login.png"))
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(live_server + "/")

    rows = page.locator("#runs tbody tr")
    assert rows.count() == 3
    assert page.get_by_text("vic (viewer)").is_visible()
    page.screenshot(path=str(shots / "2-runs.png"), full_page=True)

    # The filter form is swapped in place by htmx: the page itself is not reloaded.
    page.wait_for_function("typeof window.htmx === 'object'")  # loaded (deferred) and ready
    page.evaluate("window.stillHere = true")
    page.get_by_label("Where").fill("params.auc > 0.95")
    page.get_by_label("Where").press("Enter")
    page.wait_for_function("document.querySelectorAll('#runs tbody tr').length === 2")
    assert page.evaluate("window.stillHere") is True
    assert "where=params.auc" in page.url
    page.screenshot(path=str(shots / "3-filtered.png"), full_page=True)

    page.locator("#runs tbody tr").first.get_by_role("link").click()
    page.wait_for_url(f"{live_server}/runs/{served.runs[2]}")
    steps = page.get_by_role("table", name="Steps in the order they started")
    assert steps.locator("tbody tr").count() == 2
    assert "hit" in steps.locator("tbody tr").first.inner_text()  # prepare came from the cache
    assert page.get_by_role("table", name="Last value of each metric series").is_visible()
    page.screenshot(path=str(shots / "4-run.png"), full_page=True)

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(live_server + "/login")
    page.goto("/")
    assert page.get_by_role("heading", name="Log in first").is_visible()
    assert errors == []
    assert sorted(p.name for p in shots.iterdir()) == [
        "1-login.png",
        "2-runs.png",
        "3-filtered.png",
        "4-run.png",
    ]
