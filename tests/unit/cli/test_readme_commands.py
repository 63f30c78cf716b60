"""The README's command table names every top-level command of the CLI."""

from __future__ import annotations

import re
from pathlib import Path

from pipetrail.cli.main import cli

README = Path(__file__).resolve().parents[3] / "README.md"


def _table_commands() -> set[str]:
    text = README.read_text(encoding="utf-8")
    table = text.split("## Commands", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `pipetrail")]
    # A row may name several commands (`pipetrail serve ...`, `pipetrail token ...`); the
    # first word after `pipetrail` in each code span is the command.
    found = set()
    for row in rows:
        cell = row.split(" | ")[0]
        found.update(re.findall(r"`pipetrail (?:--\S+ \S+ )?([a-z][a-z-]*)", cell))
        found.update(re.findall(r"`(model|promote|approve|reject|rollback|decision)\b", cell))
        found.update(re.findall(r", `?(model|promote|approve|reject|rollback|decision)\b", cell))
    return found


def test_every_command_is_in_the_readme_table() -> None:
    commands = set(cli.list_commands(None))  # type: ignore[arg-type]
    missing = sorted(commands - _table_commands())
    assert not missing, f"README.md's command table does not name: {', '.join(missing)}"


def test_the_table_names_no_command_the_cli_lacks() -> None:
    extra = sorted(_table_commands() - set(cli.list_commands(None)))  # type: ignore[arg-type]
    assert not extra, f"README.md's command table names unknown commands: {', '.join(extra)}"
