"""What a source may be and contain, and the errors when it is not.

Owns :class:`SourceChangedError` and the confinement rules of
:func:`~pipetrail.capture.sources.observe_source`: ``..``, absolute paths outside the
project root and symlinks pointing outside it raise
:class:`~pipetrail.errors.DefinitionError` unless ``allow_outside=True``; sockets, FIFOs
and devices are always refused, and so is anything in (or holding) a protected folder:
the project's ``.pipetrail`` state folder and the artifact store, whatever the path
(``..``, a symlink, a symlink inside a folder source) leading there, ``allow_outside`` or
not. Every message names the source, the file and a fix.
Imports only ``pipetrail.errors`` and the standard library.
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from pipetrail.errors import DefinitionError

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

__all__ = [
    "ALLOW_OUTSIDE_HINT",
    "SourceChangedError",
    "refuse_protected",
    "resolve_source",
    "special_file_error",
    "unreadable_error",
    "within",
]

ALLOW_OUTSIDE_HINT = "or allow it explicitly with source(..., allow_outside=True)"
_SPECIAL = {stat.S_IFSOCK: "a socket", stat.S_IFIFO: "a named pipe (FIFO)"}
_SPECIAL |= {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


class SourceChangedError(DefinitionError):
    """A source file changed or vanished while it was being observed.

    Attributes:
        file: the absolute path of the file (or folder) concerned.
    """

    def __init__(self, message: str, *, file: str) -> None:
        super().__init__(message)
        self.file = file


def within(path: str, parent: str) -> bool:
    """Return whether normalized absolute ``path`` is ``parent`` or lies under it."""
    return path == parent or path.startswith(os.path.join(parent, ""))


def resolve_source(
    label: str,
    root: Path,
    *,
    allow_outside: bool,
    protected: Iterable[str | os.PathLike[str]] = (),
) -> str:
    """Return the real absolute path of a source, refusing escapes from the root.

    Args:
        label: the source as declared.
        root: the project root.
        allow_outside: accept a path leading outside ``root``.
        protected: folders a source may neither be in nor hold (the project's state
            folder, the artifact store), even with ``allow_outside``.

    Raises:
        DefinitionError: the path, or a symlink on the way, leads outside ``root`` and
            ``allow_outside`` is false; or it leads into a protected folder, or holds one.
    """
    root_abs = os.path.abspath(root)
    given = os.path.join(root_abs, label)  # an absolute label replaces root_abs
    if not allow_outside and not within(os.path.normpath(given), root_abs):
        raise DefinitionError(
            f"source {label!r} is outside the project root {root_abs}; sources must stay "
            "inside the project so runs can be reproduced from it: move the data in, "
            f"{ALLOW_OUTSIDE_HINT}"
        )
    real = os.path.realpath(given)
    if not allow_outside and not within(real, os.path.realpath(root_abs)):
        raise DefinitionError(
            f"source {label!r} goes through a symlink to {real}, outside the project root "
            f"{root_abs}; copy the data into the project, {ALLOW_OUTSIDE_HINT}"
        )
    for folder in protected:
        refuse_protected(label, real, os.path.realpath(folder))
    return real


def refuse_protected(label: str, real: str, folder: str, *, link: str | None = None) -> None:
    """Refuse a source, or a symlink inside a folder source, that reaches a protected folder.

    Args:
        label: the source as declared.
        real: the real absolute path the source (or ``link``) leads to.
        folder: a protected folder, real and absolute.
        link: the symlink inside the source that leads to ``real``, if that is the way.

    Raises:
        DefinitionError: ``real`` is inside ``folder`` or holds it.
    """
    state = "where pipetrail keeps its own state (the ledger, the artifact store, caches)"
    if link is not None:
        if within(real, folder) or within(folder, real):
            where = "inside" if within(real, folder) else "a folder holding"
            raise DefinitionError(
                f"source {label!r}: {link} is a symlink to {real}, {where} {folder}, {state}; "
                "a source is data a step reads: remove the link, or point it at data"
            )
        return
    if within(real, folder):
        where = "is" if real == folder else f"leads to {real}, which is"
        raise DefinitionError(
            f"source {label!r} {where} inside {folder}, {state}; a source is data a step "
            "reads: point it at a folder of your data"
        )
    if within(folder, real):
        raise DefinitionError(
            f"source {label!r} ({real}) holds {folder}, {state}; point the source at a folder "
            "of your data that does not hold it"
        )


def special_file_error(label: str, file: str, mode: int) -> DefinitionError:
    """The error for a socket, FIFO or device found as (or in) a source."""
    what = _SPECIAL.get(stat.S_IFMT(mode), "a special file")
    return DefinitionError(
        f"source {label!r}: {file} is {what}, not a regular file or folder; sources may "
        "hold only files and folders, so move it out of the source"
    )


def unreadable_error(label: str, file: str, exc: OSError) -> DefinitionError:
    """The error for a source file or folder that could not be read."""
    return DefinitionError(
        f"source {label!r}: {file} could not be read ({exc.strerror or exc}); give the "
        "current user read access to it"
    )
