"""Serializers: how step outputs become stored bytes, and back.

Owns the :class:`Serializer` Protocol, the :class:`StoredArtifact` record, the
:class:`SerializerRegistry` and the built-in formats (one module each: ``json_format``,
``bytes_format``, ``file_format``, ``folder_format``, ``parquet_format`` with
``table_normalize``, ``numpy_format``, ``skops_format`` and ``pickle_format``, the only
module allowed to import :mod:`pickle`), ``kept_bytes``: loading values back from the
bytes a dump has just written, and ``identity``: whether a serializer registered again
is the same one (its module run once more).

Importing this package never imports pandas, numpy, pyarrow, polars, scikit-learn or
skops; each format imports its library when it is used. Must not import
``pipetrail.ledger``, ``execution``, ``capture`` or ``cli``.
"""

from __future__ import annotations

import typing as _typing

from pipetrail.core.lazy import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from pipetrail.store.serializers.base import Serializer as Serializer
    from pipetrail.store.serializers.base import StoredArtifact as StoredArtifact
    from pipetrail.store.serializers.registry import SerializerRegistry as SerializerRegistry
    from pipetrail.store.serializers.registry import default_registry as default_registry
    from pipetrail.store.serializers.registry import register_serializer as register_serializer

__all__ = [
    "Serializer",
    "SerializerRegistry",
    "StoredArtifact",
    "default_registry",
    "register_serializer",
]

__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "Serializer": "pipetrail.store.serializers.base",
        "StoredArtifact": "pipetrail.store.serializers.base",
        "SerializerRegistry": "pipetrail.store.serializers.registry",
        "default_registry": "pipetrail.store.serializers.registry",
        "register_serializer": "pipetrail.store.serializers.registry",
    },
)
