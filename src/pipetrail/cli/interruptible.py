"""Ctrl-C and SIGTERM for the commands that run pipelines: ``run``, ``reproduce``, ``check``.

:func:`interruptible` wraps such a command in
:func:`~pipetrail.execution.interrupts.handling_interrupts`: the first SIGINT or SIGTERM
stops the run where it is (recorded as ``interrupted``), a second one exits at once.
What the user sees is one line on stderr and exit code 130 (SIGINT) or 143 (SIGTERM),
never click's ``Aborted!`` and exit 1:

* a run was recorded as interrupted: ``run R interrupted by SIGINT: 1 completed, 1
  interrupted, 1 not run; details: pipetrail show R`` (a command may report it itself
  first, as ``run --json`` does);
* the signal came when no run was going on: ``error: interrupted by SIGINT ...`` followed
  by what the command says was left undone.

Imports only click, ``pipetrail.errors`` and ``pipetrail.cli.exits`` at module level.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from pipetrail.cli.exits import fail, interrupted_exit_code
from pipetrail.errors import RunInterruptedError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["interruptible"]

# What `pipetrail run` says when the signal came before its run was recorded.
NOTHING_RECORDED = "nothing was recorded"


def interruptible(
    unfinished: str | None = None,
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Run a command with SIGINT and SIGTERM handled (see the module docstring).

    Args:
        unfinished: what was left undone when a signal came while no run was going on
            (``"the reproduction was not recorded"``); None for ``pipetrail run``, whose
            only run had not been recorded yet then.

    Returns:
        The decorator.
    """

    def decorate(command: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            from pipetrail.execution.interrupts import handling_interrupts

            with handling_interrupts():
                try:
                    command(*args, **kwargs)
                except RunInterruptedError as exc:
                    code = interrupted_exit_code(exc.signal_name)
                    if exc.run_id is not None:
                        _print_interrupted_run(exc.run_id, exc.signal_name)
                        raise SystemExit(code) from None
                    if unfinished is None:
                        fail(f"{exc}; {NOTHING_RECORDED}", code)
                    fail(f"interrupted by {exc.signal_name}; {unfinished}", code)

        return wrapper

    return decorate


def _print_interrupted_run(run_id: str, signal_name: str) -> None:
    """Print the one line about a run recorded as interrupted (read back from the ledger)."""
    from pipetrail.cli.render import print_run_interrupted
    from pipetrail.execution.explain import run_summary
    from pipetrail.execution.project import Project

    project = Project.discover()
    try:
        summary = run_summary(project.reader(), run_id)
    finally:
        project.close()
    print_run_interrupted(summary, signal_name)
