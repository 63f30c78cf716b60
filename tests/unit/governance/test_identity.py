"""Who is acting: PIPETRAIL_USER, the user config, the system name; signed drafts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import IdentityError
from pipetrail.governance.identity import current_user, signed_content, signed_draft
from pipetrail.governance.keys import create_key, load_signer, signing_message, verify_signature
from pipetrail.ledger.events import EventKind

if TYPE_CHECKING:
    from pathlib import Path


def test_the_environment_wins_then_the_user_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPETRAIL_HOME", str(tmp_path))
    (tmp_path / "config.toml").write_text('[user]\nname = "carol"\n')
    monkeypatch.setenv("PIPETRAIL_USER", "dave")
    assert current_user() == "dave"
    monkeypatch.delenv("PIPETRAIL_USER")
    assert current_user() == "carol"


def test_an_invalid_name_says_where_it_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPETRAIL_HOME", str(tmp_path))
    monkeypatch.setenv("PIPETRAIL_USER", "Robert'); DROP")
    with pytest.raises(IdentityError, match=r"cannot name a user.*PIPETRAIL_USER"):
        current_user()
    monkeypatch.delenv("PIPETRAIL_USER")
    (tmp_path / "config.toml").write_text("[user\n")
    with pytest.raises(IdentityError, match="cannot read the user config"):
        current_user()


def test_without_any_setting_the_system_name_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIPETRAIL_HOME", str(tmp_path))
    monkeypatch.delenv("PIPETRAIL_USER", raising=False)
    monkeypatch.setattr("getpass.getuser", lambda: "Erin")
    assert current_user() == "erin"


def test_a_signed_draft_signs_everything_but_its_signature(tmp_path: Path) -> None:
    create_key("alice", folder=tmp_path)
    signer = load_signer("alice", folder=tmp_path)
    draft = signed_draft(EventKind.DECISION_RECORDED, {"text": "t"}, signer, run_id="R")
    payload = draft.payload
    assert (payload["by"], payload["key_id"], draft.run_id) == (
        "alice",
        signer.public_key.key_id,
        "R",
    )
    message = signing_message("decision.recorded", signed_content(payload))
    assert verify_signature(signer.public_key, message, payload["signature"])
    # the same signature cannot pass for another kind of act
    other = signing_message("promotion.approved", signed_content(payload))
    assert not verify_signature(signer.public_key, other, payload["signature"])


def test_the_ledger_read_model_types_a_signed_draft(tmp_path: Path) -> None:
    from pipetrail.ledger.event_records import GovernanceAct, parse_payload

    create_key("alice", folder=tmp_path)
    signer = load_signer("alice", folder=tmp_path)
    draft = signed_draft(EventKind.ALIAS_MOVED, {"model": "m"}, signer)
    record = parse_payload(str(draft.kind), draft.payload)
    assert isinstance(record, GovernanceAct)
    assert (record.by, record.key_id) == ("alice", signer.public_key.key_id)
    assert record.payload["model"] == "m"
