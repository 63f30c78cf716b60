"""The serializer interface and the record of a stored artifact.

Owns :class:`Serializer` (the Protocol every format implements), :class:`StoredArtifact`
(what a serializer returns and needs back to load a value) and :func:`qualified_type_name`.
Imports only the standard library and ``pipetrail.store.base`` (for typing); never
``ledger``, ``execution``, ``capture`` or ``cli``, and never a heavy library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pipetrail.store.base import ContentStore

__all__ = ["Serializer", "StoredArtifact", "qualified_type_name"]


def qualified_type_name(value: Any) -> str:
    """Return the fully qualified name of ``value``'s type (``module.QualName``)."""
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True)
class StoredArtifact:
    """What was stored for one value, and everything needed to load it back.

    Attributes:
        digest: the artifact's identity. Equal values give equal digests; for most
            formats it is the digest of the stored bytes, for tables it is taken over a
            normalized form, for folders it is the manifest's digest.
        blob: the digest of the bytes stored in the content store (the object to read).
        serializer: the name of the serializer that wrote it (``json``, ``parquet``...).
        type_name: the value's type, e.g. ``pandas.DataFrame`` or ``builtins.dict``.
        size: the size of ``blob`` in bytes.
        meta: JSON-able facts about the value (schema, rows, shape, dtype, files...).
    """

    digest: str
    blob: str
    serializer: str
    type_name: str
    size: int
    meta: dict[str, Any] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        """Return the record as plain JSON-able data (inverse of :meth:`from_dict`)."""
        return {
            "digest": self.digest,
            "blob": self.blob,
            "serializer": self.serializer,
            "type_name": self.type_name,
            "size": self.size,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoredArtifact:
        """Rebuild a record from :meth:`to_dict` output."""
        return cls(
            digest=data["digest"],
            blob=data["blob"],
            serializer=data["serializer"],
            type_name=data["type_name"],
            size=int(data["size"]),
            meta=dict(data.get("meta") or {}),
        )


@runtime_checkable
class Serializer(Protocol):
    """Turns values of some types into stored bytes and back.

    Contract:

    * ``handles`` is cheap, never raises, and never imports a heavy library: it checks
      ``sys.modules`` or the type's module name, so an unimported library means "no".
    * ``dump`` is deterministic: the same value gives the same ``digest`` on every run.
      It writes through ``store`` only, and raises
      :class:`~pipetrail.errors.SerializationError` for values it cannot store.
    * ``load`` returns a value equal to the one dumped (documented exceptions: tuples
      come back as lists from ``json``; files and folders come back as paths to copies).
    * Instances are stateless and safe to share between threads.

    Attributes:
        name: unique name recorded in :attr:`StoredArtifact.serializer`.
    """

    name: str

    def handles(self, value: Any) -> bool:
        """Return whether this serializer can store ``value``."""
        ...

    def dump(self, value: Any, store: ContentStore) -> StoredArtifact:
        """Store ``value`` and return its record."""
        ...

    def load(self, record: StoredArtifact, store: ContentStore) -> Any:
        """Read back the value described by ``record``."""
        ...
