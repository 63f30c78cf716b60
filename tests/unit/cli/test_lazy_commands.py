"""Commands defined in their own modules are imported only when they run."""

from __future__ import annotations

import importlib

import click
import pytest
from click.testing import CliRunner

from pipetrail.cli.main import AUDIT_COMMANDS, LAZY_COMMANDS, RUNS_COMMANDS, audit, cli, runs

GROUPS: list[tuple[click.Group, dict[str, tuple[str, str, str]], list[str]]] = [
    (cli, LAZY_COMMANDS, []),
    (runs, RUNS_COMMANDS, ["runs"]),
    (audit, AUDIT_COMMANDS, ["audit"]),
]
LISTED = [(group, table, path, name) for group, table, path in GROUPS for name in sorted(table)]


@pytest.mark.parametrize(
    ("group", "table", "path", "name"), LISTED, ids=[" ".join([*p, n]) for _, _, p, n in LISTED]
)
def test_the_listed_short_help_is_the_command_s_own(
    group: click.Group, table: dict[str, tuple[str, str, str]], path: list[str], name: str
) -> None:
    module, attribute, listed = table[name]
    command = getattr(importlib.import_module(module), attribute)
    assert isinstance(command, click.Command)
    assert command.name == name
    width = click.HelpFormatter().width
    limit = width - 6 - max(map(len, group.list_commands(click.Context(group))))
    assert listed == command.get_short_help_str(limit)


@pytest.mark.parametrize(("group", "table", "path"), GROUPS, ids=["pipetrail", "runs", "audit"])
def test_help_lists_every_command_and_each_lazy_one_runs(
    group: click.Group, table: dict[str, tuple[str, str, str]], path: list[str]
) -> None:
    runner = CliRunner()
    listing = runner.invoke(cli, [*path, "--help"])
    assert listing.exit_code == 0
    for name in table:
        assert f"  {name} " in listing.output
        shown = runner.invoke(cli, [*path, name, "--help"])
        assert shown.exit_code == 0, shown.output
        usage = " ".join([*path, name])
        assert f"Usage: cli {usage}" in shown.output or f"Usage: pipetrail {usage}" in shown.output
