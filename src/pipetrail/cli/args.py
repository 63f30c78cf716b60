"""Parsing of options shared by several commands (``-p NAME=VALUE``, ``--seed``).

Errors are :class:`click.BadParameter`, which click reports as a usage error (exit 2)
naming the option. Imports only click at module level, like every command module.
"""

from __future__ import annotations

import click

__all__ = ["parse_params", "parse_seed"]


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
