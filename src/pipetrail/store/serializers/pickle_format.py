"""The ``pickle`` serializer: the opt-in fallback for trusted artifacts.

Owns the only use of :mod:`pickle` in pipetrail (ruff bans it everywhere else). The
registry uses it only when the caller passes ``allow_pickle=True`` and no other serializer
handles the value. Loading runs arbitrary code, so :meth:`PickleSerializer.load` refuses
records not marked ``meta["trusted"] = True``. Pickle bytes are not canonical: equal
values may get different digests, so caching on them is best effort.

Imports only ``pipetrail.errors`` and the serializer base.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.errors import SerializationError
from pipetrail.store.serializers.base import FORMAT_VERSION_KEY, StoredArtifact, qualified_type_name

if TYPE_CHECKING:
    from pipetrail.store.base import ContentStore

__all__ = ["PICKLE_PROTOCOL", "PickleSerializer"]

PICKLE_PROTOCOL = 5


class PickleSerializer:
    """Stores any picklable value with pickle protocol 5 (trusted artifacts only)."""

    name = "pickle"
    version = 1

    def handles(self, value: Any) -> bool:
        """Return True: whether pickle may be used is the registry's decision."""
        return True

    def dump(self, value: Any, store: ContentStore) -> StoredArtifact:
        """Pickle and store the value.

        Raises:
            SerializationError: the value cannot be pickled.
        """
        import pickle  # here, not at import: only runs that pickle pay for it

        try:
            data = pickle.dumps(value, protocol=PICKLE_PROTOCOL)
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            raise SerializationError(
                f"Value of type {qualified_type_name(value)} cannot be pickled ({exc}); "
                "return something picklable or register a serializer for it."
            ) from exc
        digest = store.put_bytes(data)
        return StoredArtifact(
            digest=digest,
            blob=digest,
            serializer=self.name,
            type_name=qualified_type_name(value),
            size=len(data),
            meta={"trusted": True, "protocol": PICKLE_PROTOCOL, FORMAT_VERSION_KEY: self.version},
        )

    def load(self, record: StoredArtifact, store: ContentStore) -> Any:
        """Unpickle the value; only for records marked trusted.

        Raises:
            SerializationError: the record is not marked ``trusted``.
        """
        if record.meta.get("trusted") is not True:
            raise SerializationError(
                f"Artifact {record.digest} uses pickle but is not marked trusted; refusing to "
                "unpickle it because that runs arbitrary code."
            )
        import pickle

        return pickle.loads(store.get_bytes(record.blob))
