"""An approval signed in the browser (Debian's chromium, WebCrypto Ed25519): carol's key
is loaded from its file into the page, which signs the bytes the server proposes; the
server, which holds no key of hers, checks the signature against the key the ledger
records for her. A key the ledger does not record for her is refused and nothing is
written. Screenshots go to $PIPETRAIL_TEST_ARTIFACTS (else the test's temporary folder)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from playwright.sync_api import expect

from pipetrail.governance.keys import create_key
from tests.integration.server.conftest import log_in

if TYPE_CHECKING:
    from playwright.sync_api import Browser

    from tests.integration.server.conftest import Served

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.e2e]


def test_approve_with_a_key_held_by_the_browser(
    served: Served, live_server: str, browser: Browser, tmp_path: Path
) -> None:
    shots = Path(os.environ.get("PIPETRAIL_TEST_ARTIFACTS", tmp_path)) / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    served.gov("rita").register("churn", f"{served.runs[0]}:train.output")
    request_id = served.gov("rita").request_promotion(
        "churn", 1, "production", rationale="best auc", risk="low"
    )["request_id"]
    stranger = tmp_path / "stranger"
    create_key("carol", folder=stranger)  # a key of carol's name the ledger does not record

    carol = log_in(browser, live_server, served.tokens["carol"])
    errors: list[str] = []
    carol.on("pageerror", lambda exc: errors.append(str(exc)))
    carol.goto("/models")
    signed_approve = carol.get_by_role(
        "button", name=f"Approve {request_id}, signed in this browser"
    )
    expect(signed_approve).to_be_disabled()  # no key loaded yet
    status = carol.locator("#signing-status")

    # Not a key file: the page says so.
    junk = tmp_path / "junk.key"
    junk.write_text("hello")
    carol.get_by_label("Your signing key file").set_input_files(str(junk))
    expect(status).to_contain_text("not a private key in PKCS #8 PEM form")
    expect(signed_approve).to_be_disabled()

    # A key the ledger does not record for carol: refused, nothing written.
    before = served.project.reader().event_count()
    carol.get_by_label("Your signing key file").set_input_files(str(stranger / "keys/carol.key"))
    expect(status).to_contain_text("Key loaded")
    carol.get_by_label("Comment").fill("metrics checked")
    signed_approve.click()
    expect(status).to_contain_text("not the one the ledger records for carol")
    assert served.project.reader().event_count() == before
    carol.screenshot(path=str(shots / "9-wrong-key.png"), full_page=True)

    # Her recorded key: the page signs, the server checks and records.
    carol.get_by_label("Your signing key file").set_input_files(
        str(served.homes / "carol" / "keys" / "carol.key")
    )
    expect(status).to_contain_text("Key loaded")
    carol.get_by_label("Comment").fill("metrics checked")
    signed_approve.click()
    carol.wait_for_url(live_server + "/models")
    requests = carol.get_by_role("table", name="Every promotion request, oldest first")
    expect(requests).to_contain_text("approved")
    expect(requests).to_contain_text("carol: metrics checked")
    assert "production → 1" in carol.get_by_role("table", name="Registered models").inner_text()
    carol.screenshot(path=str(shots / "10-signed-in-browser.png"), full_page=True)
    assert served.project.reader().event_count() == before + 2  # the approval, the alias move

    # The chain and every signature still verify, the browser's among them.
    carol.get_by_role("link", name="Audit").click()
    assert carol.get_by_text("every signature verifies").is_visible()
    assert errors == []
