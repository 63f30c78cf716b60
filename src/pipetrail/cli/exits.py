"""Exit codes, and how every command reports a pipetrail error: ``error: ...`` on stderr.

| code | meaning |
| --- | --- |
| 0 | success |
| 1 | a step failed (in a run, or while re-executing one) |
| 2 | bad input: unknown file, parameter, run or step; bad configuration |
| 3 | an integrity check failed (ledger chain, derived tables, or store) |
| 4 | a store could not be used |
| 5 | a run did not reproduce, or the gate failed |
| 6 | a run cannot be reproduced as recorded (a by-reference source changed, ...) |

The command group maps errors with :func:`exit_code`; commands that are also invoked on
their own (tests call them directly) wrap their body in :func:`reporting_errors`. Imports
only click, json and ``pipetrail.errors``, so it costs nothing at start-up.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from pipetrail.errors import (
    IntegrityError,
    LedgerError,
    NotReproducibleError,
    PipetrailError,
    StepFailedError,
    StoreError,
    TamperedLedgerError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CANNOT_REPRODUCE",
    "EXIT_INTEGRITY",
    "EXIT_NOT_REPRODUCED",
    "EXIT_OK",
    "EXIT_RUN_FAILED",
    "EXIT_STORE",
    "emit_json",
    "exit_code",
    "fail",
    "reporting_errors",
]

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTEGRITY = 3
EXIT_STORE = 4
EXIT_NOT_REPRODUCED = 5
EXIT_CANNOT_REPRODUCE = 6


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def exit_code(exc: PipetrailError) -> int:
    """The exit code for a pipetrail error (see the table above)."""
    if isinstance(exc, StepFailedError):
        return EXIT_RUN_FAILED
    if isinstance(exc, NotReproducibleError):
        return EXIT_CANNOT_REPRODUCE
    if isinstance(exc, IntegrityError | TamperedLedgerError):
        return EXIT_INTEGRITY
    if isinstance(exc, LedgerError | StoreError):
        return EXIT_STORE
    return EXIT_BAD_INPUT


@contextlib.contextmanager
def reporting_errors() -> Iterator[None]:
    """Turn a pipetrail error raised inside into ``error: ...`` and its exit code."""
    try:
        yield
    except PipetrailError as exc:
        fail(str(exc), exit_code(exc))


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON with sorted keys (anything else as text)."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
