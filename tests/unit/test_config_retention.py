"""The ``[retention]`` table: rule names, durations, and one message per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipetrail.config_model import validate_retention
from pipetrail.errors import ProjectError

FILE = Path("pipetrail.toml")


def test_rules_become_seconds() -> None:
    rules = validate_retention(
        FILE,
        {
            "exploration_runs": "30d",
            "failed_runs": "12h",
            "pii_sources": "90d",
            "internal_outputs": 600,
            "phi_outputs": "1.5m",
            "step_outputs": "90d",
            "sources": "2h",
        },
    )
    assert rules == {
        "exploration_runs": 30 * 86400.0,
        "failed_runs": 12 * 3600.0,
        "pii_sources": 90 * 86400.0,
        "internal_outputs": 600.0,
        "phi_outputs": 90.0,
        "step_outputs": 90 * 86400.0,
        "sources": 7200.0,
    }
    assert validate_retention(FILE, None) == {}
    assert validate_retention(FILE, {}) == {}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"old_runs": "3d"}, "unknown key 'retention.old_runs'; a retention rule names"),
        ({"public_outputs": "3d"}, "unknown key 'retention.public_outputs'"),
        ({"internal_sources": "3d"}, "unknown key 'retention.internal_sources'"),
        ({"step_output": "3d"}, "unknown key 'retention.step_output'"),
        ({"step_outputs": "-3d"}, "'retention.step_outputs' must be a duration longer than"),
        ({"sources": -1}, "'retention.sources' must be a duration longer than zero"),
        ({"sources": "3 weeks"}, "'retention.sources' must be a duration"),
        ({"failed_runs": "soon"}, "'retention.failed_runs' must be a duration longer than zero"),
        ({"failed_runs": "0d"}, "longer than zero"),
        ({"failed_runs": -5}, "longer than zero"),
        ({"failed_runs": True}, "got True"),
        ({"failed_runs": float("inf")}, "longer than zero"),
        ({"failed_runs": float("nan")}, "longer than zero"),
        ({"failed_runs": ["30d"]}, "got ['30d']"),
        ("30d", "'retention' must be a table"),
    ],
)
def test_mistakes_are_named(table: object, message: str) -> None:
    with pytest.raises(ProjectError) as caught:
        validate_retention(FILE, table)
    text = str(caught.value)
    assert text.startswith("pipetrail.toml: ")
    assert message in text
    assert text.endswith("fix the file")
