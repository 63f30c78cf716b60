"""Promotion policies: parsed from the raw TOML dict, refused by name when malformed."""

from __future__ import annotations

import pytest

from pipetrail.errors import ProjectError
from pipetrail.governance.policy import AliasPolicy, parse_policies, parse_threshold


def test_a_policy_reads_every_key_and_freezes_them() -> None:
    policies = parse_policies(
        {
            "pipetrail": {"seed": 1},
            "promotion": {
                "production": {
                    "approvals": 2,
                    "approver_roles": ["approver"],
                    "checks": ["gate", "parity"],
                    "metrics": ["roc_auc >= 0.95", "train.loss<0.2"],
                    "parity_reference": "01ABC",
                }
            },
        }
    )
    policy = policies["production"]
    assert policy.approvals == 2
    assert [str(t) for t in policy.thresholds] == ["roc_auc >= 0.95", "train.loss < 0.2"]
    assert policy.frozen()["approver_roles"] == ["approver"]


def test_without_a_table_an_alias_needs_one_approver() -> None:
    assert parse_policies({}) == {}
    default = AliasPolicy()
    assert default.approvals == 1
    assert default.approver_roles == ("approver", "admin")
    assert default.checks == ()


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"checks": ["vibes"]}, "'vibes' is not a check; the checks are: gate"),
        ({"approver_roles": ["boss"]}, "'boss' is not a role"),
        ({"approver_roles": ["viewer"]}, "role 'viewer' may not approve"),
        ({"approver_roles": []}, "at least one role"),
        ({"approvals": 0}, "approvals"),
        ({"metrics": ["auc => 1"]}, "not a metric threshold"),
        ({"rollback": "anyone"}, "rollback"),
        ({"color": "red"}, "color"),
        ({"checks": ["parity"]}, "names no parity_reference"),
    ],
)
def test_a_malformed_policy_is_refused_naming_alias_and_key(
    table: dict[str, object], words: str
) -> None:
    with pytest.raises(ProjectError, match="alias 'production'") as caught:
        parse_policies({"promotion": {"production": table}})
    assert words in str(caught.value)


def test_a_policy_that_is_not_a_table_is_refused() -> None:
    with pytest.raises(ProjectError, match=r"promotion.production must be a table"):
        parse_policies({"promotion": {"production": 3}})


@pytest.mark.parametrize(
    ("text", "value", "holds"),
    [
        ("auc >= 0.95", 0.95, True),
        ("auc > 0.95", 0.95, False),
        ("loss <= 1e-3", 0.002, False),
        ("n == 3", 3.0, True),
        ("x < -1", -2.0, True),
    ],
)
def test_thresholds(text: str, value: float, holds: bool) -> None:
    assert parse_threshold(text).holds(value) is holds
