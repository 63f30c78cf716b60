"""Binding ``None`` and ``bytes`` to SQLite statements without the adaptation lookups.

The standard library's ``sqlite3`` binds ``int``, ``float``, ``str`` and ``bytearray``
values directly, but passes every other value, ``None`` and ``bytes`` included, through
its adaptation protocol first: a registry lookup, then an ``__adapt__`` attribute looked
for on the protocol and a ``__conform__`` attribute on the value. Neither attribute exists
on ``None`` or ``bytes``, so each lookup fails by building an ``AttributeError`` (with its
message) that is then thrown away, and the value is bound as it is. The ledger and the
object pack bind a ``None`` for most empty columns of every row they write, a few dozen
per step of a run.

Registering an identity adapter for exactly these two types makes the registry lookup
find it, so the value is bound as before (``NULL``, a ``BLOB``) without the failed
lookups. An adapter the process registered itself for either type is left in place.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["bind_plainly"]

_DONE = False


def bind_plainly() -> None:
    """Register the identity adapters for ``None`` and ``bytes`` (once per process).

    ``{}.get`` returns ``None`` for ``None`` and ``bytes`` returns an exact ``bytes``
    object itself: both are C calls, so a bound value costs one call instead of two
    failed attribute lookups. Subclasses of ``bytes`` are adapted as before.
    """
    global _DONE
    if _DONE:
        return
    _DONE = True
    if (type(None), sqlite3.PrepareProtocol) not in sqlite3.adapters:
        sqlite3.register_adapter(type(None), cast("Callable[[None], None]", {}.get))
    if (bytes, sqlite3.PrepareProtocol) not in sqlite3.adapters:
        sqlite3.register_adapter(bytes, bytes)
