"""Exit codes, and how every command reports a pipetrail error: ``error: ...`` on stderr.

| code | meaning |
| --- | --- |
| 0 | success |
| 1 | a step failed, or its input could not be loaded (in a run, or re-executing one) |
| 2 | bad input: unknown file, parameter, run or step; bad configuration |
| 3 | an integrity check failed (ledger chain, derived tables, or store) |
| 4 | a store could not be used, or a disk is full (also while storing a step's output) |
| 5 | a run did not reproduce, or the gate failed |
| 6 | a run cannot be reproduced as recorded (a by-reference source changed, ...) |
| 7 | a refusal: missing role, separation of duties, failing check, unknown key; a quota used up |
| 130 | interrupted by SIGINT (Ctrl-C); the run is recorded as interrupted |
| 143 | ended by SIGTERM; the run is recorded as interrupted |

130 and 143 follow the shell convention ``128 + signal number``; a second signal while
the run is being closed exits at once with the same code (the run then shows as
crashed).

The command group maps errors with :func:`exit_code`; commands that are also invoked on
their own (tests call them directly) wrap their body in :func:`reporting_errors`. Imports
only click, json and ``pipetrail.errors``, so it costs nothing at start-up.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from pipetrail.errors import (
    GovernanceError,
    IdentityError,
    IntegrityError,
    LedgerError,
    LoadError,
    NotReproducibleError,
    OutputFileError,
    PipetrailError,
    QuotaExceededError,
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
    "EXIT_INTERRUPTED",
    "EXIT_NOT_REPRODUCED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_RUN_FAILED",
    "EXIT_STORE",
    "disk_full_message",
    "EXIT_TERMINATED",
    "emit_json",
    "exit_code",
    "fail",
    "interrupted_exit_code",
    "reporting_errors",
    "store_failure",
]

EXIT_OK = 0
EXIT_RUN_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTEGRITY = 3
EXIT_STORE = 4
EXIT_NOT_REPRODUCED = 5
EXIT_CANNOT_REPRODUCE = 6
EXIT_REFUSED = 7
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143


def fail(message: str, code: int) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def exit_code(exc: PipetrailError) -> int:
    """The exit code for a pipetrail error (see the table above)."""
    if isinstance(exc, StepFailedError):
        return EXIT_STORE if store_failure(exc) is not None else EXIT_RUN_FAILED
    if isinstance(exc, LoadError):  # a step's input could not be loaded: the run failed
        return EXIT_RUN_FAILED
    if isinstance(exc, OutputFileError):
        return EXIT_STORE if exc.disk_full else EXIT_BAD_INPUT
    if isinstance(exc, NotReproducibleError):
        return EXIT_CANNOT_REPRODUCE
    if isinstance(exc, IntegrityError | TamperedLedgerError):
        return EXIT_INTEGRITY
    if isinstance(exc, IdentityError):  # no usable key or name: fix the input, exit 2
        return EXIT_BAD_INPUT
    if isinstance(exc, GovernanceError | QuotaExceededError):  # a refusal, not a crash
        return EXIT_REFUSED
    if isinstance(exc, LedgerError | StoreError):
        return EXIT_STORE
    return EXIT_BAD_INPUT


def disk_full_message(exc: OSError) -> str | None:
    """The one-line message for an ``OSError`` that says the disk is full, else None.

    The last resort for a full disk met outside the stores and the files commands write
    (which name their own folder): names the file the system reported, when it did.
    """
    if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    where = f" while writing {exc.filename}" if exc.filename else ""
    folder = f" in {os.path.dirname(os.path.abspath(exc.filename))}" if exc.filename else ""
    return f"no space left on the device{where}; free disk space{folder} and try again"


def store_failure(exc: StepFailedError) -> StoreError | None:
    """The store error behind a failed step, when storing its outputs failed (disk full).

    A step fails as well when the store cannot take what it returned; that is the
    store's failure, not the step's, and exits with :data:`EXIT_STORE`. A digest mismatch
    (:class:`~pipetrail.errors.IntegrityError`) is not such a failure.
    """
    return exc.store_error


def interrupted_exit_code(signal_name: str) -> int:
    """The exit code for a run ended by a signal: 143 for SIGTERM, else 130."""
    return EXIT_TERMINATED if signal_name == "SIGTERM" else EXIT_INTERRUPTED


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
