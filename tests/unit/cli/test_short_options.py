"""Commands of ``pipetrail`` parse exact short options as short straight away, same result.

The parser built by :class:`ShortOptionsFirst` must read every command line as click's
own does: flags, options with values (attached or not), bundled flags, long options,
``--`` and unknown options (with click's message and suggestion), while a plain ``-q``
builds no "no such option" error (so ``difflib`` stays unimported).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import click
import pytest
from click.testing import CliRunner

from pipetrail.cli.short_options import ShortOptionsFirst


def _command(cls: type[click.Command]) -> click.Command:
    @click.command(cls=cls)
    @click.argument("target", required=False)
    @click.argument("rest", nargs=-1)
    @click.option("-q", "--quiet", is_flag=True)
    @click.option("-v", "--verbose", is_flag=True)
    @click.option("-p", "--param", "params", multiple=True)
    @click.option("--json", "as_json", is_flag=True)
    def cmd(**kwargs: Any) -> None:
        click.echo(json.dumps(kwargs, sort_keys=True))

    return cmd


@pytest.mark.parametrize(
    "args",
    [
        ["file.py", "-q"],
        ["-q", "file.py"],
        ["-qv", "file.py"],
        ["-vq", "file.py", "-p", "a=1", "-pb=2"],
        ["file.py", "--quiet", "--param", "c=3", "--param=d=4", "--json"],
        ["file.py", "-p", "-q"],  # -q is the value of -p here
        ["file.py", "--", "-q"],  # after --, an argument
        ["file.py", "-z"],
        ["file.py", "--quit"],
        ["file.py", "-p"],
        ["-q=1", "file.py"],
    ],
)
def test_parsing_is_click_s_own(args: list[str]) -> None:
    runner = CliRunner()
    ours = runner.invoke(_command(ShortOptionsFirst), args)
    theirs = runner.invoke(_command(click.Command), args)
    assert (ours.exit_code, ours.output) == (theirs.exit_code, theirs.output)


def test_the_cli_uses_it_and_a_quiet_run_parses_without_difflib() -> None:
    code = (
        "import sys, json\n"
        "from pipetrail.cli.main import cli\n"
        "from pipetrail.cli.short_options import ShortOptionsFirst\n"
        "command = cli.get_command(None, 'run')\n"
        "ctx = command.make_context('run', ['file.py', '-q', '--no-cache'])\n"
        "print(json.dumps([isinstance(command, ShortOptionsFirst), ctx.params['quiet'],\n"
        "                  'difflib' in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout) == [True, True, False]
