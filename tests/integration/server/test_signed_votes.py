"""Votes signed by a key the server never holds: the caller fetches the bytes its vote
appends, signs them, and sends the signatures; the server checks them against the key the
ledger records for the caller. A bad signature, another key, or the requester approving
their own request is refused and nothing is written."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.governance.keys import create_key, load_signer, signing_message
from pipetrail.governance.rules import request_digest
from pipetrail.ledger.events import EventKind

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

    from pipetrail.governance.keys import Signer
    from tests.integration.server.conftest import Served

pytestmark = pytest.mark.integration


def _open_request(served: Served) -> str:
    served.gov("rita").register("churn", f"{served.runs[0]}:train.output")
    opened = served.client("rita").post(
        "/api/v1/models/churn/versions/1/promotions",
        json={"alias": "production", "rationale": "best auc", "risk": "low"},
    )
    assert opened.status_code == 201, opened.text
    request_id: str = opened.json()["request_id"]
    return request_id


def _to_sign(client: TestClient, request_id: str, comment: str) -> dict[str, Any]:
    answer = client.post(
        f"/api/v1/requests/{request_id}/to-sign",
        json={"decision": "approve", "comment": comment},
    )
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def _signed(signer: Signer, draft: dict[str, Any]) -> list[str]:
    return [signer.sign(base64.b64decode(e["message"])) for e in draft["events"]]


def test_an_approval_signed_by_the_callers_own_key_is_recorded(served: Served) -> None:
    request_id = _open_request(served)
    carol = served.client("carol")  # carol's key is hers: the server does not hold it
    assert carol.post(f"/api/v1/requests/{request_id}/approve", json={}).status_code == 403

    before = served.project.reader().event_count()
    draft = _to_sign(carol, request_id, "looks right")
    assert served.project.reader().event_count() == before  # the preview writes nothing
    kinds = [e["kind"] for e in draft["events"]]
    assert kinds == [str(EventKind.PROMOTION_APPROVED), str(EventKind.ALIAS_MOVED)]
    first = draft["events"][0]
    assert first["payload"]["by"] == "carol"
    assert first["payload"]["comment"] == "looks right"
    assert "signature" not in first["payload"]
    # The bytes are exactly what the ledger's rules check the signature over.
    assert base64.b64decode(first["message"]) == signing_message(first["kind"], first["payload"])

    key = load_signer("carol", folder=served.homes / "carol")
    voted = carol.post(
        f"/api/v1/requests/{request_id}/signed",
        json={"decision": "approve", "comment": "looks right", "signatures": _signed(key, draft)},
    )
    assert voted.status_code == 200, voted.text
    assert voted.json()["status"] == "approved"
    assert voted.json()["moved"] is True
    assert served.project.reader().event_count() == before + 2
    audit = carol.get("/api/v1/audit").json()["governance"]
    assert audit["intact"] is True
    shown = carol.get(f"/api/v1/requests/{request_id}").json()
    assert [(a["by"], a["comment"]) for a in shown["approvals"]] == [("carol", "looks right")]


def test_a_bad_signature_another_key_or_a_changed_comment_is_refused(served: Served) -> None:
    request_id = _open_request(served)
    carol = served.client("carol")
    draft = _to_sign(carol, request_id, "ok")
    before = served.project.reader().event_count()
    url = f"/api/v1/requests/{request_id}/signed"

    good = _signed(load_signer("carol", folder=served.homes / "carol"), draft)
    flipped = base64.b64decode(good[0])
    damaged = base64.b64encode(bytes([flipped[0] ^ 1]) + flipped[1:]).decode("ascii")
    create_key("carol", folder=served.root.parent / "elsewhere")
    other = _signed(load_signer("carol", folder=served.root.parent / "elsewhere"), draft)

    for signatures, comment in (
        ([damaged, good[1]], "ok"),  # a damaged signature
        (other, "ok"),  # a key the ledger does not record for carol
        (good, "something else"),  # signed bytes of another vote
    ):
        refused = carol.post(
            url, json={"decision": "approve", "comment": comment, "signatures": signatures}
        )
        assert refused.status_code == 403, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert "no signature sent verifies" in refused.json()["detail"]
        assert "carol" in refused.json()["detail"]
        assert served.project.reader().event_count() == before

    malformed = carol.post(
        url, json={"decision": "approve", "comment": "ok", "signatures": ["not base64"]}
    )
    assert malformed.status_code == 422
    assert served.project.reader().event_count() == before
    # The request is still open: the right signatures still work.
    voted = carol.post(url, json={"decision": "approve", "comment": "ok", "signatures": good})
    assert voted.status_code == 200, voted.text


def test_the_requester_cannot_approve_their_own_request_by_signing_it(served: Served) -> None:
    served.gov("alice").grant("carol", "researcher")
    served.gov("carol").register("churn", f"{served.runs[0]}:train.output")
    key = load_signer("carol", folder=served.homes / "carol")
    opened = served.gov("carol").request_promotion(
        "churn", 1, "production", rationale="mine", risk="low"
    )
    carol = served.client("carol")
    before = served.project.reader().event_count()
    asked = carol.post(
        f"/api/v1/requests/{opened['request_id']}/to-sign",
        json={"decision": "approve", "comment": ""},
    )
    assert asked.status_code == 403
    assert "separation of duties" in asked.json()["detail"]

    # Signing the right bytes without asking is refused the same way, under the write lock.
    state = served.gov("alice").state()
    payload = {
        "request_id": opened["request_id"],
        "request_digest": request_digest(state.requests[opened["request_id"]].content),
        "comment": "",
        "by": "carol",
        "key_id": key.public_key.key_id,
    }
    move = {
        "model": "churn",
        "alias": "production",
        "version": 1,
        "previous": None,
        "cause": "promotion",
        "request_id": opened["request_id"],
        "by": "carol",
        "key_id": key.public_key.key_id,
    }
    forged = [
        key.sign(signing_message(str(EventKind.PROMOTION_APPROVED), payload)),
        key.sign(signing_message(str(EventKind.ALIAS_MOVED), move)),
    ]
    sent = carol.post(
        f"/api/v1/requests/{opened['request_id']}/signed",
        json={"decision": "approve", "comment": "", "signatures": forged},
    )
    assert sent.status_code == 403
    assert "separation of duties" in sent.json()["detail"]
    assert served.project.reader().event_count() == before


def test_a_viewer_may_not_ask_for_bytes_to_sign(served: Served) -> None:
    request_id = _open_request(served)
    asked = served.client("vic").post(
        f"/api/v1/requests/{request_id}/to-sign", json={"decision": "approve"}
    )
    assert asked.status_code == 403
