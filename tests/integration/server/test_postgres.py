"""The server over a PostgreSQL ledger: tokens, reads on several threads, a promotion
approved through the API, signed by the approver's key."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest

from pipetrail.governance.service import Governance

if TYPE_CHECKING:
    from tests.integration.server.conftest import Served

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def test_the_api_on_postgres(served_on_postgres: Served) -> None:
    served = served_on_postgres
    assert served.project.config.metadata_url.startswith("postgresql")
    vic = served.client("vic")

    def page(_: int) -> list[str]:
        answer = vic.get("/api/v1/runs", params={"param": "rows=12"})
        assert answer.status_code == 200, answer.text
        return [r["run_id"] for r in answer.json()["runs"]]

    with ThreadPoolExecutor(4) as pool:
        pages = list(pool.map(page, range(12)))
    assert all(p == served.runs[:0:-1] for p in pages)
    assert served.client().get("/api/v1/runs").status_code == 401

    served.gov("rita").register("churn", f"{served.runs[0]}:train.output")
    opened = served.client("rita").post(
        "/api/v1/models/churn/versions/1/promotions",
        json={"alias": "production", "rationale": "r", "risk": "low"},
    )
    assert opened.status_code == 201, opened.text
    request_id = opened.json()["request_id"]
    assert (
        served.client("rita").post(f"/api/v1/requests/{request_id}/approve", json={}).status_code
        == 403
    )
    approved = served.client("bob").post(f"/api/v1/requests/{request_id}/approve", json={})
    assert approved.status_code == 200, approved.text
    state = Governance(served.project, user="bob").state()
    assert state.alias_version("churn", "production") == 1
    assert not state.problems
