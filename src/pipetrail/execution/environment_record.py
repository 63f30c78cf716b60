"""A run's environment record, stored once per process while the environment is the same.

Storing the environment snapshot (a few kilobytes of JSON: every installed distribution)
means classifying, encoding and hashing it, about a millisecond; a process that runs many
pipelines into one store (a sweep, a notebook) would pay it at every run for the same
bytes. :func:`stored_environment` remembers, per store object, the last snapshot it
stored and its record, and reuses the record when the new snapshot is the same, the
registry is the same object and the store still holds the object.

"The same" is told by :func:`snapshot_identity`: the snapshot's ``marshal`` bytes, which
exist for the plain types a snapshot is made of (dicts, lists, strings, numbers, None)
and tell apart what ``==`` does not and the stored JSON does (``1``, ``1.0`` and
``True``; ``0.0`` and ``-0.0``), since ``marshal`` reads back each value with its type.
They are built in C, faster than ``repr`` of the same snapshot (a hundred distributions
or more); format version 2 is used, whose bytes depend on the values alone (not on
which strings are shared or interned). A snapshot holding anything else falls back to ``repr``.
"""

from __future__ import annotations

import marshal
import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipetrail.store import ContentStore, SerializerRegistry, StoredArtifact

__all__ = ["snapshot_identity", "stored_environment"]

_last: weakref.WeakKeyDictionary[Any, tuple[SerializerRegistry, Any, StoredArtifact]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()
# Version 2: no back-references and no interning flags, which later versions write
# according to the objects' reference counts and interning; the bytes then depend on
# the values and their types alone.
_MARSHAL_VERSION = 2


def stored_environment(
    environment: dict[str, Any], registry: SerializerRegistry, store: ContentStore
) -> StoredArtifact:
    """Store ``environment`` with ``registry`` in ``store`` (unless stored just before).

    Raises:
        SerializationError: the snapshot cannot be stored.
        StoreError: the store failed.
    """
    text = snapshot_identity(environment)
    try:
        found = _last.get(store)
    except TypeError:  # a store that cannot be weakly referenced: nothing remembered
        return registry.dump(environment, store)
    if (
        found is not None
        and found[0] is registry
        and found[1] == text
        and store.exists(found[2].blob)
    ):
        return found[2]
    record = registry.dump(environment, store)
    with _lock:
        _last[store] = (registry, text, record)
    return record


def snapshot_identity(environment: dict[str, Any]) -> bytes | str:
    """A value equal for two snapshots only when they store the same bytes (module doc).

    ``marshal`` bytes for a snapshot of plain types; ``repr`` (a ``str``, never equal
    to bytes) for one holding anything else, a subclass included.
    """
    try:
        return marshal.dumps(environment, _MARSHAL_VERSION)
    except ValueError:  # a type marshal does not write
        return repr(environment)
