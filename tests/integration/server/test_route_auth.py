"""Deny by default: every route of the live app refuses an anonymous call (401) and a call
by a user whose roles do not allow what the route needs (403); a route that declares no
need stops the application from being built."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from fastapi import FastAPI

from pipetrail.governance.roles import PERMISSIONS, Action, Role
from pipetrail.server.app import PUBLIC
from pipetrail.server.auth import check_every_route_declares, need, route_needs
from tests.integration.server.conftest import PEOPLE

if TYPE_CHECKING:
    from tests.integration.server.conftest import Served

pytestmark = pytest.mark.integration

ROLES = {"alice": ["admin"], **PEOPLE}


def _concrete(path: str, served: Served) -> str:
    values = {
        "run_ref": served.runs[0],
        "step": "train",
        "ref": "latest:train.output",
        "direction": "up",
        "model": "churn",
        "version": "1",
        "request_id": "req-00000000",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def _query(path: str, served: Served) -> dict[str, str]:
    if path.endswith(("/lineage/{direction}", "/lineage")):
        return {"ref": served.runs[0]}
    if path.endswith(("/compare", "/lineage-path", "/drift")):
        return {"a": served.runs[0], "b": served.runs[1]}
    return {}


def _allows(who: str, action: Action) -> bool:
    return any(action in PERMISSIONS[Role(r)] for r in ROLES[who])


def test_every_route_but_the_login_declares_a_need(served: Served) -> None:
    needs = route_needs(served.app)
    assert len(needs) >= 20
    assert {key for key, action in needs.items() if action is None} == PUBLIC
    # Each kind of need is there: reading, requesting, approving.
    assert {Action.READ, Action.REQUEST_PROMOTION, Action.APPROVE} <= set(needs.values())


def test_each_route_refuses_anonymous_callers_and_roles_below_its_need(served: Served) -> None:
    anonymous = served.client()
    people = {who: served.client(who) for who in ROLES}
    checked = 0
    for (method, path), action in sorted(route_needs(served.app).items()):
        if action is None:
            continue
        url, query = _concrete(path, served), _query(path, served)
        refused = anonymous.request(method, url, params=query, json={})
        assert refused.status_code == 401, (method, path, refused.text)
        assert refused.headers["content-type"].startswith(("application/problem+json", "text/html"))
        assert "WWW-Authenticate" in refused.headers or not path.startswith("/api/")
        below = [who for who in ROLES if not _allows(who, action)]
        assert below, (method, path, action)
        for who in below:
            answer = people[who].request(method, url, params=query, json={})
            assert answer.status_code == 403, (method, path, who, answer.text)
            assert answer.json()["detail"].startswith(f"{who} may not {action.value}")
            checked += 1
        if method == "GET":
            allowed = next(who for who in ROLES if _allows(who, action))
            answer = people[allowed].request(method, url, params=query)
            assert answer.status_code not in (401, 403), (method, path, allowed, answer.text)
    assert checked >= 30


def test_a_wrong_scheme_or_an_unknown_token_is_401(served: Served) -> None:
    client = served.client()
    for header in (
        "Basic YWxpY2U6eA==",
        "Bearer",
        "Bearer ptk_000000000000_" + "A" * 43,
        "Bearer " + served.tokens["alice"][:-1] + "B",
        f"bearer {served.tokens['alice']}x",
    ):
        answer = client.get("/api/v1/runs", headers={"Authorization": header})
        assert answer.status_code == 401, header
        assert answer.headers["content-type"] == "application/problem+json"
        assert served.tokens["alice"] not in answer.text


def test_an_app_with_an_undeclared_route_is_refused() -> None:
    app = FastAPI()

    @app.get("/declared")
    def declared(_: object = need(Action.READ)) -> None:
        """Declares its need as a dependency... in the wrong way (a default value)."""

    with pytest.raises(RuntimeError, match="GET /declared"):
        check_every_route_declares(app, set())


def test_public_static_files_hold_no_record(served: Served) -> None:
    answer = served.client().get("/static/pipetrail.css")
    assert answer.status_code == 200
    assert "text/css" in answer.headers["content-type"]
