"""Commands defined in their own modules are imported only when they run."""

from __future__ import annotations

import importlib

import click
import pytest
from click.testing import CliRunner

from pipetrail.cli.main import LAZY_COMMANDS, cli


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_the_listed_short_help_is_the_command_s_own(name: str) -> None:
    module, attribute, listed = LAZY_COMMANDS[name]
    command = getattr(importlib.import_module(module), attribute)
    assert isinstance(command, click.Command)
    assert command.name == name
    width = click.HelpFormatter().width
    limit = width - 6 - max(map(len, cli.list_commands(click.Context(cli))))
    assert listed == command.get_short_help_str(limit)


def test_help_lists_every_command_and_each_lazy_one_runs() -> None:
    runner = CliRunner()
    listing = runner.invoke(cli, ["--help"])
    assert listing.exit_code == 0
    for name in LAZY_COMMANDS:
        assert f"  {name} " in listing.output
        shown = runner.invoke(cli, [name, "--help"])
        assert shown.exit_code == 0, shown.output
        assert f"Usage: cli {name}" in shown.output or f"Usage: pipetrail {name}" in shown.output
