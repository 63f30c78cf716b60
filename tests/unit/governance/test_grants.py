"""Access grants: which labels they may name, their end date, and what allows a read."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import GovernanceError
from pipetrail.governance.grants import check_grant_label, check_until, read_basis
from pipetrail.governance.keys import create_key
from pipetrail.governance.roles import Action, Role, roles_allowing
from pipetrail.governance.state import GovernanceState, Grant, KeyPeriod, User

if TYPE_CHECKING:
    from pathlib import Path


def _user(name: str, *roles: Role, tmp_path: Path) -> User:
    key = create_key(name, folder=tmp_path / name)
    return User(name, None, "person", set(roles), [KeyPeriod(key, 1)], 1, "alice")


def _grant(grant_id: str, until: str | None, revoked: int | None = None) -> Grant:
    return Grant(grant_id, "rita", "pii", "study", until, "alice", "t", 2, revoked)


def test_grants_name_sensitive_labels_only() -> None:
    for label in ("confidential", "pii", "phi"):
        assert check_grant_label(label) == label
    with pytest.raises(GovernanceError, match="not sensitive and needs no grant"):
        check_grant_label("public")
    with pytest.raises(GovernanceError, match="not a known label"):
        check_grant_label("secret")


def test_until_is_an_iso_date() -> None:
    assert check_until(None) is None
    assert check_until(" 2030-02-01 ") == "2030-02-01"
    with pytest.raises(GovernanceError, match="YYYY-MM-DD"):
        check_until("01/02/2030")


def test_a_grant_holds_through_its_last_day_and_not_after_revocation() -> None:
    grant = _grant("g1", "2030-01-31")
    assert grant.active("2030-01-31")
    assert not grant.active("2030-02-01")
    assert _grant("g2", None).active("2999-12-31")
    assert not _grant("g3", None, revoked=5).active("2000-01-01")


def test_read_basis_admin_first_then_an_open_grant_of_that_label(tmp_path: Path) -> None:
    state = GovernanceState()
    state.users["alice"] = _user("alice", Role.ADMIN, tmp_path=tmp_path)
    state.users["rita"] = _user("rita", Role.RESEARCHER, tmp_path=tmp_path)
    assert read_basis(state, "alice", "phi", "2030-01-01") is Role.ADMIN
    assert read_basis(state, "rita", "pii", "2030-01-01") is None
    state.grants["g1"] = _grant("g1", "2030-01-31")
    assert read_basis(state, "rita", "pii", "2030-01-01") is state.grants["g1"]
    assert read_basis(state, "rita", "phi", "2030-01-01") is None  # another label
    assert read_basis(state, "rita", "pii", "2030-02-01") is None  # expired
    assert read_basis(state, "mallory", "pii", "2030-01-01") is None  # not a user


def test_only_admins_grant_and_read_sensitive_content_by_role() -> None:
    assert roles_allowing(Action.GRANT_ACCESS) == [Role.ADMIN]
    assert roles_allowing(Action.READ_SENSITIVE) == [Role.ADMIN]
