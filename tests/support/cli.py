"""Run the pipetrail command line: as a person of a test team, in a child process, or in
this process through click's runner.

The child process is for what only a whole process shows (the entry point's exit codes,
signals, crashes, start-up). A test of a command's behaviour and output runs it in this
process (:func:`cli_inline`): the same ``cli`` group, arguments, working directory and
environment, without a Python start-up per command.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

PIPETRAIL = [sys.executable, "-m", "pipetrail.cli.main"]


def cli_as(root: Path, who: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``pipetrail ARGS`` in ``root`` as ``who``, whose keys live beside ``root``."""
    return cli_inline(
        root,
        *args,
        env={"PIPETRAIL_USER": who, "PIPETRAIL_HOME": str(root.parent / f"home-{who}")},
    )


def cli_inline(
    cwd: Path,
    *args: str,
    env: Mapping[str, str | None] | None = None,
    unset: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``pipetrail ARGS`` in this process, in ``cwd``, with ``env`` over ``os.environ``.

    ``COLUMNS`` is 200 unless ``env`` says otherwise (a child process whose output is a
    pipe and that is given none has 80), so the width never comes from the terminal
    running the tests. Variables whose names start with one of ``unset`` are removed (a
    ``None`` in ``env`` removes one) for the command.

    Returns what :func:`subprocess.run` would (return code, standard output and error).
    An exception escaping the command is raised again here: the real command would have
    printed a traceback, which no test accepts.
    """
    from click.testing import CliRunner

    from pipetrail.cli.main import cli

    changes: dict[str, str | None] = {}
    if unset:
        changes.update((name, None) for name in os.environ if name.startswith(unset))
    changes.update({"COLUMNS": "200", **(env or {})})
    with _working_directory(cwd), _root_logger_kept():
        result = CliRunner().invoke(cli, list(args), env=changes, prog_name="pipetrail")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    if isinstance(result.exception, SystemExit) and not isinstance(
        result.exception.code, int | None
    ):  # a process would print it on stderr; the runner puts it on stdout
        raise AssertionError(f"the command exited with a message: {result.exception.code!r}")
    return subprocess.CompletedProcess(
        [*PIPETRAIL, *args], result.exit_code, result.stdout, result.stderr
    )


@contextlib.contextmanager
def _working_directory(folder: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def _root_logger_kept() -> Iterator[None]:
    """Take off the root logger what a command put there for its process (``--log-format``
    adds a handler on the command's standard error, which ends with the command)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The standard output of a command that must have succeeded."""
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout
