"""Sensitive data over HTTP: sealed artifacts are downloadable only by those who may read them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from pipetrail.execution.gc import collect_garbage
from pipetrail.execution.reencryption import reencrypt_project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.hashing import digest_bytes

if TYPE_CHECKING:
    from collections.abc import Callable

    from tests.integration.conftest import PipelineFiles
    from tests.integration.server.conftest import Served

pytestmark = pytest.mark.integration

SECRET = b"Zebulon-Quartermain, 1961-04-02, diagnosis F32.1\n"

CLINIC = f"""
from pipetrail import pipeline, step

@step(classification="pii")
def patients() -> bytes:
    print("sealed log line: Zebulon")
    return {SECRET!r}

@step
def notice() -> bytes:
    return b"nothing personal"

@pipeline
def clinic():
    return patients(), notice()
"""


@pytest.fixture
def clinic_run(served: Served, files: PipelineFiles, unique: Callable[[str], str]) -> str:
    """A run with one sealed (pii) output and one plain output."""
    clinic = files.load(unique("clinic"), CLINIC)
    return run_pipeline(clinic, {}, served.project, RunOptions()).id


@pytest.mark.parametrize("who", ["rita", "bob", "vic"])
def test_a_sealed_artifact_is_refused_to_roles_that_may_not_read_sensitive_data(
    served: Served, clinic_run: str, who: str
) -> None:
    answer = served.client(who).get(f"/api/v1/artifacts/{clinic_run}:patients/content")
    assert answer.status_code == 403
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["classification"] == "pii"
    assert "labelled 'pii'" in problem["detail"]
    assert f"{who} may not read sensitive content" in problem["detail"]
    assert "needs the role admin" in problem["detail"]
    assert SECRET not in answer.content


def test_an_admin_downloads_the_decrypted_content_and_plain_artifacts_stay_open(
    served: Served, clinic_run: str
) -> None:
    answer = served.client("alice").get(f"/api/v1/artifacts/{clinic_run}:patients/content")
    assert answer.status_code == 200, answer.text
    assert answer.content == SECRET
    assert answer.headers["cache-control"] == "no-store"
    plain = served.client("vic").get(f"/api/v1/artifacts/{clinic_run}:notice/content")
    assert plain.status_code == 200
    assert plain.content == b"nothing personal"


def test_a_sealed_artifacts_record_names_its_label_and_no_plaintext_digest(
    served: Served, clinic_run: str
) -> None:
    plain_digest = digest_bytes(SECRET)
    for who in ("vic", "alice"):
        answer = served.client(who).get(f"/api/v1/artifacts/{clinic_run}:patients")
        assert answer.status_code == 200
        record = answer.json()
        assert record["sealed"] is True
        assert record["classification"] == "pii"
        assert plain_digest not in answer.text
        assert (record["size"] is None) == (who == "vic")
    steps = served.client("vic").get(f"/api/v1/runs/{clinic_run}/steps").text
    assert plain_digest not in steps
    assert "Zebulon" not in steps
    # The plain digest cannot be used to find the artifact either.
    missing = served.client("alice").get(f"/api/v1/artifacts/{plain_digest}")
    assert missing.status_code == 404


def test_a_sealed_log_is_decrypted_only_for_those_who_may_read_sensitive_data(
    served: Served, clinic_run: str
) -> None:
    refused = served.client("vic").get(f"/api/v1/runs/{clinic_run}/logs?step=patients")
    assert refused.status_code == 403
    assert "labelled pii" in refused.json()["detail"]
    assert "Zebulon" not in refused.text
    shown = served.client("alice").get(f"/api/v1/runs/{clinic_run}/logs?step=patients")
    assert shown.status_code == 200
    assert "sealed log line: Zebulon" in shown.json()["steps"][0]["text"]


def test_a_grant_lets_its_holder_download_and_each_read_is_recorded_under_the_caller(
    served: Served, clinic_run: str
) -> None:
    url = f"/api/v1/artifacts/{clinic_run}:patients/content"
    assert served.client("rita").get(url).status_code == 403
    served.gov("alice").grant_access("rita", "pii", purpose="readmission study")
    # The server's project folds the governance state per caller and request: the grant
    # counts at once.
    answer = served.client("rita").get(url)
    assert answer.status_code == 200, answer.text
    assert answer.content == SECRET
    from pipetrail.ledger.access_reads import access_records

    kinds = [(r.kind, r.user, r.action) for r in access_records(served.project.reader())]
    assert ("access.refused", "rita", "serve") in kinds
    assert ("access.read", "rita", "serve") in kinds


@pytest.mark.slow
@pytest.mark.e2e
def test_a_running_server_reads_what_another_process_re_encrypted(
    served: Served, clinic_run: str, live_server: str
) -> None:
    """`pipetrail serve` started before `keys rotate --reencrypt` needs no restart after it."""
    auth = {"Authorization": f"Bearer {served.tokens['alice']}"}
    content = f"/api/v1/artifacts/{clinic_run}:patients/content"
    logs = f"/api/v1/runs/{clinic_run}/logs?step=patients"
    with httpx.Client(base_url=live_server, headers=auth, timeout=60) as client:
        for _ in range(8):  # every worker and thread unwraps the keys and reads the map
            assert client.get(content).content == SECRET
            assert "Zebulon" in client.get(logs).json()["steps"][0]["text"]
        # Another process seals everything again under a new data key and collects the
        # old objects: the server's keys open none of the new ones, and the objects its
        # step events name are gone.
        done = reencrypt_project(served.project)
        assert done["objects"] >= 2
        collect_garbage(served.project, grace=0)
        for _ in range(8):
            answer = client.get(content)
            assert answer.status_code == 200, answer.text
            assert answer.content == SECRET
            shown = client.get(logs)
            assert shown.status_code == 200, shown.text
            assert "sealed log line: Zebulon" in shown.json()["steps"][0]["text"]
