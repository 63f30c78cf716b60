"""A local store's generation: a token that changes whenever objects may have left it.

Owns the ``generation`` file in a local store's folder (ADR 0032). It holds a random
token (32 lowercase hex characters). Whatever takes objects out of the store changes it:
a collection (:func:`pipetrail.store.gc.remove_garbage`) before it starts and after it
ends, quarantine of a corrupt loose file or packed object before and right after it is
moved aside or deleted. While the token read now equals one read earlier, every object the store
held at that earlier moment is still there. Source observation relies on that: the stat
cache remembers at which generation it saw a file's object in the store, and skips
looking it up again while the generation is the same.

Objects are only ever added otherwise, so a put never changes it. Removing object files
by hand, outside pipetrail, changes nothing here: that is damage to the store, which
``pipetrail store verify`` reports (the objects the records name and the store lacks).

The token is random, not a counter: two processes changing it at once need no lock,
since any new value differs from every value read before (a collision of two random
128-bit tokens is not a concern). A store without the file (made before it existed)
gets one the first time a generation is read. Imports only ``pipetrail.errors``,
``pipetrail.store.{local_files,os_errors}`` and the standard library.
"""

from __future__ import annotations

import contextlib
import os

from pipetrail.errors import StoreError
from pipetrail.store.local_files import fsync_dir_best_effort
from pipetrail.store.os_errors import map_os_errors

__all__ = ["GENERATION_FILE", "bump_generation", "read_generation"]

GENERATION_FILE = "generation"
_TOKEN_CHARS = 32
_HEX = frozenset("0123456789abcdef")


def read_generation(root: str) -> str | None:
    """Return the store's current generation token, making one if the store has none.

    Args:
        root: the store's folder (absolute).

    Returns:
        The token; ``None`` when there is no store folder yet (nothing stored, so
        nothing can be vouched for) or the token can neither be read nor written.
    """
    path = os.path.join(root, GENERATION_FILE)
    # Plain descriptor calls, no file object: a run reads it once per cache hit
    # (pipetrail.execution.cache_ahead).
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        token = ""
    except OSError:
        return None
    else:
        try:
            data = os.read(fd, _TOKEN_CHARS + 1)
        except OSError:
            return None
        finally:
            os.close(fd)
        token = data.decode("ascii", "replace")
    if len(token) == _TOKEN_CHARS and _HEX.issuperset(token):
        return token
    if not os.path.isdir(root):
        return None
    try:
        return bump_generation(root)
    except StoreError:
        return None


def bump_generation(root: str) -> str:
    """Give the store a new generation token and return it (durable before it returns).

    Call it before and after anything that removes objects: before, so that a removal
    interrupted half-way has changed the token already; after, so that an observation
    that read the token while objects were still there does not vouch for them later.

    Args:
        root: the store's folder (absolute); it must exist.

    Raises:
        StoreError: the token could not be written (through
            :func:`~pipetrail.store.os_errors.map_os_errors`); a caller about to remove
            objects must then remove none.
    """
    token = os.urandom(_TOKEN_CHARS // 2).hex()
    path = os.path.join(root, GENERATION_FILE)
    tmp = f"{path}.{os.getpid()}.{token[:8]}.tmp"
    with map_os_errors("record a new store generation", path, root):
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                os.write(fd, token.encode("ascii"))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        fsync_dir_best_effort(root)
    return token
