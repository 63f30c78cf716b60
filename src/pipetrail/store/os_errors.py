"""Translate ``OSError`` from a local store's file operations into our errors.

Owns the wording of those errors: what was being done, the path, the system's reason and
a fix chosen by ``errno`` (disk full, read-only filesystem, permissions). Used by
:mod:`pipetrail.store.local`, :mod:`pipetrail.store.loose` and
:mod:`pipetrail.store.local_put`. Imports only ``pipetrail.errors``.
"""

from __future__ import annotations

import contextlib
import errno
from typing import TYPE_CHECKING

from pipetrail.errors import StoreError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["map_os_errors", "store_error"]


def _fix_for(exc: OSError, root: str) -> str:
    if exc.errno == errno.ENOSPC or exc.errno == errno.EDQUOT:
        return (
            f"free disk space on the filesystem holding {root}, or move the store to a "
            "larger one ('artifacts' in pipetrail.toml, or PIPETRAIL_ARTIFACTS)"
        )
    if exc.errno == errno.EROFS:
        return (
            f"the filesystem holding {root} is read-only; mount it read-write or use another root"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"give the current user read and write access to {root}"
    return f"check that {root} is a local folder the current user can read and write"


def store_error(action: str, path: str, root: str, exc: OSError) -> StoreError:
    """Describe an ``OSError`` as a :class:`StoreError` with the path and a fix.

    Args:
        action: what was being done, as a verb phrase ("write object blake3:..").
        path: the file or folder concerned.
        root: the store's root folder, named in the fix.
        exc: the error.
    """
    return StoreError(
        f"Local store could not {action} ({path}): {exc.strerror or exc}; {_fix_for(exc, root)}."
    )


@contextlib.contextmanager
def map_os_errors(action: str, path: str, root: str) -> Iterator[None]:
    """Translate ``OSError`` raised inside the block into :class:`StoreError`.

    Args:
        action: what the block does, as a verb phrase.
        path: the file or folder concerned.
        root: the store's root folder.
    """
    try:
        yield
    except OSError as exc:
        raise store_error(action, path, root, exc) from exc
