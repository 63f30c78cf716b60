"""The gate every read of sensitive content passes: who may read it, and its record.

:meth:`~pipetrail.execution.project.Project.store_for` opens a decrypting store for a
sealed artifact only after the project's :class:`AccessGate` allows the read. The rule
itself (roles, grants, the record of each read and refusal) belongs to governance, a
layer above execution and core, so it is installed here by the package that composes
the layers (``pipetrail/__init__.py``, run on any import of pipetrail) through
:func:`install_gate`. With no gate installed a sealed read is refused: the gate fails
closed. The slot lives in core so that ``import pipetrail`` loads nothing more; the
project and the artifact record are typed loosely (``Any``) for the same reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from pipetrail.errors import GovernanceError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["AccessGate", "install_gate", "open_gate"]


class AccessGate(Protocol):
    """Allows or refuses one read of sensitive content, recording either."""

    def check(self, record: Any, *, action: str, run_id: str | None) -> None:
        """Allow the read of ``record`` (a ``StoredArtifact``), or raise.

        ``action`` says what reads it (run, get, logs, read), for the record.

        Raises:
            PermissionDeniedError: the reader may not read it (the refusal is recorded).
        """


_factory: list[Callable[[Any], AccessGate]] = []


def install_gate(factory: Callable[[Any], AccessGate]) -> None:
    """Make ``factory`` build the gate of every project (the last installed wins)."""
    _factory[:] = [factory]


def open_gate(project: Any) -> AccessGate:
    """The gate for ``project`` (an execution ``Project``).

    Raises:
        GovernanceError: no gate is installed (pipetrail was not imported as a package).
    """
    if not _factory:
        raise GovernanceError(
            "no access gate is installed, so sensitive content cannot be read; import "
            "pipetrail as a package (`import pipetrail`)"
        )
    return _factory[0](project)
