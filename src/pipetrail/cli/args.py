"""Parsing of options shared by several commands (``-p NAME=VALUE``, ``--seed``, durations).

Errors are :class:`click.BadParameter`, which click reports as a usage error (exit 2)
naming the option. Imports only click at module level, like every command module.
"""

from __future__ import annotations

import click

__all__ = ["parse_duration", "parse_params", "parse_seed"]

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    """Parse repeated ``-p NAME=VALUE`` into a dict (values stay text; the pipeline parses)."""
    found: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="-p")
        found[name.strip()] = value
    return found


def parse_seed(text: str | None) -> int | None:
    """Parse ``--seed``: an integer, ``random`` (a new seed) or None (the project's)."""
    if text is None:
        return None
    if text == "random":
        from pipetrail.capture import new_run_seed

        return new_run_seed()
    try:
        return int(text)
    except ValueError:
        raise click.BadParameter(
            f"expected an integer or 'random', got {text!r}", param_hint="--seed"
        ) from None


def parse_duration(text: str, *, option: str) -> float:
    """Parse a duration: seconds (``90``) or a number with a unit (``30m``, ``1h``, ``2d``)."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:], 0.0) if value else 0.0
    number = value[:-1] if unit else value
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0 or seconds == float("inf"):
        raise click.BadParameter(
            f"expected a duration such as 90, 30m, 1h or 2d, got {text!r}", param_hint=option
        )
    return seconds
