"""How ``pipetrail run``, ``reproduce`` and ``check`` show parity warnings: one plain line.

Kept apart from the ``env`` commands so that a run does not import them.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import TYPE_CHECKING, Any

import click

from pipetrail.errors import ParityWarning

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["parity_warnings_to_stderr"]


@contextlib.contextmanager
def parity_warnings_to_stderr() -> Iterator[None]:
    """Show :class:`ParityWarning` as a plain ``warning: ...`` on stderr; others as usual."""
    original = warnings.showwarning

    def show(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: Any = None,
        line: str | None = None,
    ) -> None:
        if issubclass(category, ParityWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            original(message, category, filename, lineno, file, line)

    with warnings.catch_warnings():
        warnings.simplefilter("always", ParityWarning)
        warnings.showwarning = show
        yield
