"""A run's environment record, stored once per process while the environment is the same.

Storing the environment snapshot (a few kilobytes of JSON: every installed distribution)
means classifying, encoding and hashing it, about a millisecond; a process that runs many
pipelines into one store (a sweep, a notebook) would pay it at every run for the same
bytes. :func:`stored_environment` remembers, per store object, the last snapshot it
stored and its record, and reuses the record when the new snapshot's ``repr`` is the
same (``repr`` tells ``1``, ``1.0`` and ``True`` apart, as the stored JSON does), the
registry is the same object and the store still holds the object.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipetrail.store import ContentStore, SerializerRegistry, StoredArtifact

__all__ = ["stored_environment"]

_last: weakref.WeakKeyDictionary[Any, tuple[SerializerRegistry, str, StoredArtifact]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()


def stored_environment(
    environment: dict[str, Any], registry: SerializerRegistry, store: ContentStore
) -> StoredArtifact:
    """Store ``environment`` with ``registry`` in ``store`` (unless stored just before).

    Raises:
        SerializationError: the snapshot cannot be stored.
        StoreError: the store failed.
    """
    text = repr(environment)
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
