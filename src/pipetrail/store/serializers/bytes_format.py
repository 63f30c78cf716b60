"""The ``bytes`` serializer: ``bytes`` and ``bytearray`` stored as they are.

Owns nothing but the mapping of raw bytes to one object; ``meta["python_type"]`` records
which of the two types to give back. Imports nothing from pipetrail but the serializer base.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.store.serializers.base import FORMAT_VERSION_KEY, StoredArtifact

if TYPE_CHECKING:
    from pipetrail.store.base import ContentStore

__all__ = ["BytesSerializer"]


class BytesSerializer:
    """Stores ``bytes``/``bytearray`` values unchanged."""

    name = "bytes"
    version = 1

    def handles(self, value: Any) -> bool:
        """Return whether ``value`` is ``bytes`` or ``bytearray`` (or a subclass)."""
        return isinstance(value, bytes | bytearray)

    def dump(self, value: Any, store: ContentStore) -> StoredArtifact:
        """Store the bytes."""
        data = bytes(value)
        digest = store.put_bytes(data)
        python_type = "bytearray" if isinstance(value, bytearray) else "bytes"
        return StoredArtifact(
            digest=digest,
            blob=digest,
            serializer=self.name,
            type_name=f"builtins.{python_type}",
            size=len(data),
            meta={"python_type": python_type, FORMAT_VERSION_KEY: self.version},
        )

    def load(self, record: StoredArtifact, store: ContentStore) -> bytes | bytearray:
        """Return the stored bytes, as a ``bytearray`` if one was stored."""
        data = store.get_bytes(record.blob)
        return bytearray(data) if record.meta.get("python_type") == "bytearray" else data
