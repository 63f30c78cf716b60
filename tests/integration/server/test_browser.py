"""The pages in a real browser (Debian's chromium driven by Playwright): log in with a
token, filter the runs table (htmx swaps it in place), open a run, log out. Screenshots
are kept in $PIPETRAIL_TEST_ARTIFACTS (else the test's temporary folder)."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from tests.integration.server.conftest import log_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from tests.integration.server.conftest import Served

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.e2e]


def _wait_for_graph(page: Page) -> None:
    """Until the lineage page's scripts have run (they are deferred)."""
    deadline = time.monotonic() + 30
    while not page.evaluate("Boolean(window.pipetrailGraph)"):
        assert time.monotonic() < deadline, "the graph was not drawn"
        time.sleep(0.05)


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
    # (Waiting through locators: the page's CSP forbids the evaluated strings
    # wait_for_function would poll with.)
    deadline = time.monotonic() + 30
    while page.evaluate("typeof window.htmx") != "object":  # loaded (deferred) and ready
        assert time.monotonic() < deadline, "htmx did not load"
        time.sleep(0.05)
    page.evaluate("window.stillHere = true")
    page.get_by_label("Where").fill("params.auc > 0.95")
    page.get_by_label("Where").press("Enter")
    expect(page.locator("#runs tbody tr")).to_have_count(2)
    assert page.evaluate("window.stillHere") is True
    assert "where=params.auc" in page.url
    page.screenshot(path=str(shots / "3-filtered.png"), full_page=True)

    page.locator("#runs tbody tr").first.get_by_role("link").click()
    page.wait_for_url(f"{live_server}/runs/{served.runs[2]}")
    steps = page.get_by_role("table", name="Steps in the order they started")
    assert steps.locator("tbody tr").count() == 2
    assert "hit" in steps.locator("tbody tr").first.inner_text()  # prepare came from the cache
    assert page.get_by_role("img", name="loss").is_visible()  # the series' chart (SVG)
    assert page.get_by_role("table", name=re.compile("^Each step's metrics")).is_visible()
    page.screenshot(path=str(shots / "4-run.png"), full_page=True)

    # The lineage graph: click a node (on the canvas) for its record, then walk upstream.
    page.get_by_role("link", name="Lineage of this run").click()
    _wait_for_graph(page)
    prepared = page.evaluate(
        "window.pipetrailGraph.nodes().filter(n => n.data('kind') === 'artifact').map(n => n.id())"
    )
    assert prepared
    box = page.locator("#graph").bounding_box()
    assert box is not None
    target = prepared[0]
    where = page.evaluate(f"window.pipetrailGraph.getElementById('{target}').renderedPosition()")
    page.mouse.click(box["x"] + where["x"], box["y"] + where["y"])
    record = page.locator("#record")
    expect(record.get_by_role("heading", name="Artifact")).to_be_visible()
    assert target in record.inner_text()
    page.screenshot(path=str(shots / "4b-lineage.png"), full_page=True)
    record.get_by_role("link", name="Upstream of this").click()
    expect(page.get_by_role("heading", name=f"Provenance of {target}")).to_be_visible()
    # The same records without a mouse: the table's buttons.
    _wait_for_graph(page)
    first = page.get_by_role("button", name="Show step_run").first
    first.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#record").get_by_role("heading", name="Step run")).to_be_visible()

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(live_server + "/login")
    page.goto("/")
    assert page.get_by_role("heading", name="Log in first").is_visible()
    assert errors == []
    assert {"1-login.png", "2-runs.png", "3-filtered.png", "4-run.png"} <= {
        p.name for p in shots.iterdir()
    }


def test_request_and_approve_a_promotion_as_two_people_compare_and_audit(
    served: Served, live_server: str, browser: Browser, tmp_path: Path
) -> None:
    shots = Path(os.environ.get("PIPETRAIL_TEST_ARTIFACTS", tmp_path)) / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    served.gov("rita").register("churn", f"{served.runs[0]}:train.output")

    rita = log_in(browser, live_server, served.tokens["rita"])
    rita.get_by_role("link", name="Models").click()
    form = rita.get_by_role("form", name="Request a promotion of churn")
    form.get_by_label("Rationale").fill("best auc so far")
    form.get_by_role("button", name="Request").click()
    rita.wait_for_url(live_server + "/models")
    requests = rita.get_by_role("table", name="Every promotion request, oldest first")
    assert "open" in requests.inner_text()
    assert rita.get_by_role("button", name="Approve", exact=False).count() == 0  # not hers
    request_id = requests.locator("tbody tr code").first.inner_text()
    rita.screenshot(path=str(shots / "5-requested.png"), full_page=True)

    # carol may approve, but the server holds no key of hers: the page says so.
    carol = log_in(browser, live_server, served.tokens["carol"])
    carol.goto("/models")
    carol.get_by_role("button", name=f"Approve {request_id}", exact=True).click()
    assert "holds no signing key for carol" in carol.get_by_role("alert").inner_text()

    bob = log_in(browser, live_server, served.tokens["bob"])
    bob.goto("/models")
    bob.get_by_label("Comment").fill("checked the metrics")
    bob.get_by_role("button", name=f"Approve {request_id}", exact=True).click()
    bob.wait_for_url(live_server + "/models")
    models = bob.get_by_role("table", name="Registered models")
    assert "production → 1" in models.inner_text()
    assert (
        "approved"
        in bob.get_by_role("table", name="Every promotion request, oldest first").inner_text()
    )
    bob.screenshot(path=str(shots / "6-approved.png"), full_page=True)

    bob.get_by_role("link", name="Compare").click()
    bob.get_by_label("Run A").select_option(served.runs[0])
    bob.get_by_label("Run B").select_option(served.runs[1])
    bob.get_by_role("button", name="Compare").click()
    assert bob.get_by_role("heading", name="Verdict: not comparable").is_visible()
    params = bob.get_by_role("table", name="Parameters that differ").inner_text()
    assert "rows" in params
    assert "auc" in params
    # Each metric's series of both runs in one chart, with a legend naming the runs.
    overlay = bob.get_by_role("img", name="loss")
    expect(overlay).to_be_visible()
    assert overlay.locator("polyline").count() == 2
    legend = overlay.locator("g.legend").text_content() or ""
    assert f"A: {served.runs[0]}" in legend
    assert f"B: {served.runs[1]}" in legend
    bob.get_by_text("Values of loss").click()
    assert bob.get_by_role("table", name=re.compile("^loss, overlaid")).is_visible()
    bob.screenshot(path=str(shots / "7-compare.png"), full_page=True)

    bob.get_by_role("link", name="Audit").click()
    assert bob.get_by_text("every signature verifies").is_visible()
    assert bob.get_by_text("agree with the events").is_visible()
    assert bob.get_by_label("Run or model").is_visible()  # approvers export bundles
    bob.screenshot(path=str(shots / "8-audit.png"), full_page=True)
