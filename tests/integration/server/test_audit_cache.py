"""The audit page keeps its full check of the ledger while no event is appended: a reload
does not re-walk the chain; an appended event, the maximum age or the "Verify again now"
button checks in full, so an edit made after a kept check is still caught."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

from pipetrail.server.app import create_app
from pipetrail.server.context import ServerSettings

if TYPE_CHECKING:
    from tests.integration.server.conftest import Served

pytestmark = pytest.mark.integration


def _chain(client: TestClient, **params: str) -> dict[str, Any]:
    answer = client.get("/api/v1/audit/checkpoints", params=params)
    assert answer.status_code == 200, answer.text
    chain: dict[str, Any] = answer.json()["chain"]
    return chain


def _edit_an_old_event(served: Served) -> None:
    database = served.project.config.metadata_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as db:
        db.execute(
            "UPDATE events SET payload = replace(payload, '\"rows\"', '\"Rows\"') WHERE seq = "
            "(SELECT min(seq) FROM events WHERE payload LIKE '%\"rows\"%')"
        )


def test_a_reload_with_no_new_event_answers_from_the_kept_check(served: Served) -> None:
    vic = served.client("vic")
    first = _chain(vic)
    assert first["ok"] is True
    assert first["cached"] is False
    again = _chain(vic)
    assert again["cached"] is True
    assert again["verified_at"] == first["verified_at"]
    assert again["checked"] == first["checked"]
    page = vic.get("/audit").text
    assert "kept: no event appended since" in page
    assert first["verified_at"] in page

    served.gov("alice").grant("vic", "researcher")  # one event more: the head moves
    moved = _chain(vic)
    assert moved["cached"] is False
    assert moved["head_seq"] == first["head_seq"] + 1
    assert moved["checked"] == first["checked"] + 1


def test_an_edit_after_a_kept_check_is_caught_by_verify_now(served: Served) -> None:
    vic = served.client("vic")
    assert _chain(vic)["ok"] is True
    _edit_an_old_event(served)
    # The head did not move: the page still shows the verdict of the earlier full check,
    # saying when it was made and that it was kept.
    kept = _chain(vic)
    assert kept["cached"] is True
    caught = _chain(vic, verify="now")
    assert caught["cached"] is False
    assert caught["chain_ok"] is False
    assert caught["first_bad_seq"] is not None
    # A broken verdict is never kept: every load checks again.
    assert _chain(vic)["chain_ok"] is False
    assert _chain(vic)["cached"] is False
    page = vic.get("/audit", params={"verify": "now"}).text
    assert f"broken at event {caught['first_bad_seq']}" in page


def test_a_kept_check_expires_after_the_maximum_age(served: Served) -> None:
    app = create_app(ServerSettings(root=served.root, audit_max_age=0))
    client = TestClient(app, base_url="https://testserver")
    client.headers["Authorization"] = f"Bearer {served.tokens['vic']}"
    assert _chain(client)["ok"] is True
    _edit_an_old_event(served)
    caught = _chain(client)
    assert caught["cached"] is False
    assert caught["chain_ok"] is False


def test_verify_takes_only_now(served: Served) -> None:
    answer = served.client("vic").get("/api/v1/audit/checkpoints", params={"verify": "later"})
    assert answer.status_code == 422
