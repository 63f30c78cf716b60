"""Content-addressed storage of artifacts: blobs named by their BLAKE3 digest.

Owns the :class:`ContentStore` Protocol and its implementations (:class:`LocalStore`,
:class:`MemoryStore`), whole-store verification (:func:`verify_store`) and the serializers
that turn step outputs into stored bytes (:mod:`pipetrail.store.serializers`).

May import only ``pipetrail.hashing``, ``pipetrail.core``, ``pipetrail.errors`` and
third-party libraries; never ``pipetrail.ledger``, ``execution``, ``capture`` or ``cli``.
Heavy libraries (pandas, numpy, pyarrow, polars, scikit-learn, skops) are imported only
when a serializer needs them.
"""

from __future__ import annotations

import typing as _typing

from pipetrail.core.lazy import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from pipetrail.store.base import ContentStore as ContentStore
    from pipetrail.store.local import LocalStore as LocalStore
    from pipetrail.store.memory import MemoryStore as MemoryStore
    from pipetrail.store.serializers.base import Serializer as Serializer
    from pipetrail.store.serializers.base import StoredArtifact as StoredArtifact
    from pipetrail.store.serializers.registry import SerializerRegistry as SerializerRegistry
    from pipetrail.store.serializers.registry import default_registry as default_registry
    from pipetrail.store.serializers.registry import register_serializer as register_serializer
    from pipetrail.store.verify import StoreVerifyReport as StoreVerifyReport
    from pipetrail.store.verify import verify_store as verify_store

__all__ = [
    "ContentStore",
    "LocalStore",
    "MemoryStore",
    "Serializer",
    "SerializerRegistry",
    "StoreVerifyReport",
    "StoredArtifact",
    "default_registry",
    "register_serializer",
    "verify_store",
]

__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "ContentStore": "pipetrail.store.base",
        "LocalStore": "pipetrail.store.local",
        "MemoryStore": "pipetrail.store.memory",
        "Serializer": "pipetrail.store.serializers.base",
        "StoredArtifact": "pipetrail.store.serializers.base",
        "SerializerRegistry": "pipetrail.store.serializers.registry",
        "default_registry": "pipetrail.store.serializers.registry",
        "register_serializer": "pipetrail.store.serializers.registry",
        "StoreVerifyReport": "pipetrail.store.verify",
        "verify_store": "pipetrail.store.verify",
    },
)
