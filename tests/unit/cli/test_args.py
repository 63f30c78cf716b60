"""Options shared by several commands."""

from __future__ import annotations

import click
import pytest

from pipetrail.cli.args import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("90s", 90.0),
        ("30m", 1800.0),
        ("1h", 3600.0),
        ("2D", 172800.0),
        (" 12h ", 43200.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, option="--older-than") == seconds


@pytest.mark.parametrize("text", ["", "h", "soon", "-5", "1w", "nan", "inf", "5 m m"])
def test_bad_durations_name_the_option(text: str) -> None:
    with pytest.raises(click.BadParameter, match="expected a duration") as info:
        parse_duration(text, option="--older-than")
    assert info.value.param_hint == "--older-than"
