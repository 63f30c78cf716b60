"""The server over an S3 store: listings, verified downloads and pages read the bucket."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from pipetrail.hashing import digest_bytes

if TYPE_CHECKING:
    from tests.integration.server.conftest import Served

pytestmark = pytest.mark.integration


def test_the_api_and_pages_over_an_s3_store(served_on_s3: Served) -> None:
    served = served_on_s3
    assert (served.project.config.store_url or "").startswith("s3://")
    # Nothing of the runs' content is in the project folder: the bucket holds it.
    local = served.root / ".pipetrail" / "objects"
    assert not local.exists() or not any(p.is_file() for p in local.rglob("*"))
    vic = served.client("vic")
    listed = vic.get("/api/v1/runs").json()["runs"]
    assert sorted(r["run_id"] for r in listed) == sorted(served.runs)

    record = vic.get(f"/api/v1/artifacts/{served.runs[0]}:train.output").json()
    content = vic.get(f"/api/v1/artifacts/{record['digest']}/content")
    assert content.status_code == 200, content.text
    assert digest_bytes(content.content) == record["digest"]
    assert json.loads(content.content) == {"roc_auc": 0.97, "rows": 10}

    logs = vic.get(f"/api/v1/runs/{served.runs[0]}/logs")
    assert logs.status_code == 200, logs.text
    page = vic.get(f"/runs/{served.runs[0]}")
    assert page.status_code == 200, page.text
    assert served.runs[0] in page.text
