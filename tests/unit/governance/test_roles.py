"""The roles table: deny by default, and a refusal that names what is missing."""

from __future__ import annotations

import pytest

from pipetrail.errors import PermissionDeniedError
from pipetrail.governance.roles import (
    PERMISSIONS,
    Action,
    Role,
    authorize,
    parse_role,
    roles_allowing,
)


def test_every_action_is_allowed_to_admin_and_denied_without_a_role() -> None:
    for action in Action:
        authorize("root", [Role.ADMIN], action)
        with pytest.raises(PermissionDeniedError, match="has no role"):
            authorize("nobody", [], action)


def test_the_table_matches_the_documented_duties() -> None:
    assert roles_allowing(Action.APPROVE) == [Role.APPROVER, Role.ADMIN]
    assert roles_allowing(Action.REQUEST_PROMOTION) == [Role.RESEARCHER, Role.ADMIN]
    assert roles_allowing(Action.MANAGE_USERS) == [Role.ADMIN]
    assert roles_allowing(Action.READ) == list(Role)
    assert roles_allowing(Action.READ_SENSITIVE) == [Role.ADMIN]
    assert roles_allowing(Action.EXPORT_AUDIT) == [Role.APPROVER, Role.ADMIN]
    assert Action.APPROVE not in PERMISSIONS[Role.RESEARCHER]
    assert Action.REQUEST_PROMOTION not in PERMISSIONS[Role.APPROVER]


def test_a_refusal_names_user_action_held_and_needed_roles() -> None:
    with pytest.raises(PermissionDeniedError) as refused:
        authorize("bob", [Role.RESEARCHER, Role.VIEWER], Action.APPROVE)
    message = str(refused.value)
    assert "bob may not approve or reject" in message
    assert "approver or admin" in message
    assert "bob has viewer, researcher" in message
    assert "pipetrail user grant bob ROLE" in message


def test_roles_parse_case_insensitively_and_unknown_ones_are_listed() -> None:
    assert parse_role(" Approver ") is Role.APPROVER
    with pytest.raises(PermissionDeniedError, match="the roles are: viewer, researcher"):
        parse_role("owner")
