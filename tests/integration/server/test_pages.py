"""The pages over the test client, with one event loop for the whole session (as a real
server has): log in, the models page and its forms, compare, audit; a refusal re-renders
the page with the reason; nothing read on one thread is used on another."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from fastapi.testclient import TestClient

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tests.integration.server.conftest import Served

pytestmark = pytest.mark.integration


@pytest.fixture
def session(served: Served) -> Iterator[tuple[TestClient, TestClient]]:
    """carol's and bob's browser sessions, each on one event loop thread."""
    served.gov("rita").register("churn", f"{served.runs[0]}:train.output")
    with (
        TestClient(served.app, base_url="https://testserver") as carol,
        TestClient(served.app, base_url="https://testserver") as bob,
    ):
        for client, who in ((carol, "carol"), (bob, "bob")):
            form = client.get("/login").text
            value = re.search(r'name="login_csrf" value="([^"]+)"', form)
            assert value is not None
            answer = client.post(
                "/login",
                data={"token": served.tokens[who], "login_csrf": value.group(1)},
                follow_redirects=False,
            )
            assert answer.status_code == 303
        yield carol, bob


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def test_a_refused_approval_shows_why_and_the_next_one_moves_the_alias(
    served: Served, session: tuple[TestClient, TestClient]
) -> None:
    carol, bob = session
    opened = served.client("rita").post(
        "/api/v1/models/churn/versions/1/promotions",
        json={"alias": "production", "rationale": "r", "risk": "low"},
    )
    request_id = opened.json()["request_id"]
    page = carol.get("/models")
    assert page.status_code == 200
    assert f"Approve {request_id}" in page.text
    refused = carol.post(
        f"/requests/{request_id}/vote",
        data={"csrf_token": _csrf(page.text), "decision": "approve"},
        follow_redirects=False,
    )
    assert refused.status_code == 403
    assert 'role="alert"' in refused.text
    assert "holds no signing key for carol" in refused.text

    page = bob.get("/models")
    done = bob.post(
        f"/requests/{request_id}/vote",
        data={"csrf_token": _csrf(page.text), "decision": "approve", "comment": "ok"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    after = bob.get("/models").text
    assert "production → 1" in after
    assert "approved" in after
    assert (
        bob.post(
            f"/requests/{request_id}/vote", data={"decision": "reject"}, follow_redirects=False
        ).status_code
        == 403
    )  # no CSRF token


def test_the_requester_form_and_who_sees_which_form(
    served: Served, session: tuple[TestClient, TestClient]
) -> None:
    carol, _ = session
    assert "Request a promotion" not in carol.get("/models").text  # an approver only
    rita = served.client("rita")  # a bearer token needs no CSRF token
    page = rita.get("/models").text
    assert "Request a promotion" in page
    assert "Approve" not in page
    made = rita.post(
        "/models/churn/promote",
        data={"version": "1", "alias": "staging", "rationale": "try it", "risk": "low"},
        follow_redirects=False,
    )
    assert made.status_code == 303
    assert "staging" in rita.get("/models").text
    bad = rita.post(
        "/models/churn/promote",
        data={"version": "1", "alias": "../x", "rationale": "r", "risk": "low"},
        follow_redirects=False,
    )
    assert bad.status_code == 422


def test_compare_and_audit_pages(served: Served, session: tuple[TestClient, TestClient]) -> None:
    _, bob = session
    page = bob.get("/compare", params={"a": served.runs[0], "b": served.runs[1]})
    assert page.status_code == 200
    assert "Verdict: not comparable" in page.text
    assert "<td>rows</td><td>10</td><td>12</td>" in page.text
    # loss, logged by train in both runs: one chart with both series and their values.
    overlay = page.text[page.text.index('id="overlays"') :]
    assert overlay.count('<svg class="chart overlay"') == 1
    assert overlay.count('<polyline class="series series-') == 2
    assert f"<td>A: {served.runs[0]}</td><td>2</td><td>0.333333" in overlay
    assert f"<td>B: {served.runs[1]}</td><td>0</td><td>1.0</td>" in overlay
    assert bob.get("/compare").status_code == 200  # the picker alone
    audit = bob.get("/audit").text
    assert "every signature verifies" in audit
    assert "&lt;script" not in audit
