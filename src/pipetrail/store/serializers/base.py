"""The serializer interface and the record of a stored artifact.

Owns :class:`Serializer` (the Protocol every format implements), :class:`StoredArtifact`
(what a serializer returns and needs back to load a value), :func:`qualified_type_name`
the format version (:func:`format_version`, recorded in every artifact's
``meta[FORMAT_VERSION_KEY]``) and where loads put the copies they make
(:func:`copies_under`, :func:`copy_parent`). Imports only the standard library, ``pipetrail.errors``
and ``pipetrail.store.base`` (for typing); never ``ledger``, ``execution``, ``capture``
or ``cli``, and never a heavy library.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pipetrail.errors import SerializationError

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager
    from contextvars import Token

    from pipetrail.store.base import ContentStore

__all__ = [
    "FORMAT_VERSION_KEY",
    "Serializer",
    "StoredArtifact",
    "copies_under",
    "copy_parent",
    "format_version",
    "qualified_type_name",
    "recorded_format_version",
]

# The key of StoredArtifact.meta that records the version of the format of the bytes.
FORMAT_VERSION_KEY = "format_version"

_COPY_PARENT: ContextVar[Callable[[], str] | None] = ContextVar(
    "pipetrail_copy_parent", default=None
)


def copy_parent() -> str | None:
    """Return the folder a load should create its temp copies in (None: the system's).

    Serializers whose ``load`` writes files (folders, files from remote stores) pass it
    as ``dir=`` to :func:`tempfile.mkdtemp`.
    """
    make = _COPY_PARENT.get()
    return None if make is None else make()


class _CopiesUnder:
    """The context manager :func:`copies_under` returns (a class: it wraps every load)."""

    def __init__(self, make: Callable[[], str]) -> None:
        self._make = make
        self._token: Token[Callable[[], str] | None] | None = None

    def __enter__(self) -> None:
        self._token = _COPY_PARENT.set(self._make)

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _COPY_PARENT.reset(self._token)
            self._token = None


def copies_under(make: Callable[[], str]) -> AbstractContextManager[None]:
    """Make loads in this context create their temp copies under ``make()``.

    ``make`` is called only when a load needs a folder, so a caller can create the folder
    lazily (and remove it, with every copy, once the loaded values are no longer used).
    """
    return _CopiesUnder(make)


def qualified_type_name(value: Any) -> str:
    """Return the fully qualified name of ``value``'s type (``module.QualName``)."""
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}"


@dataclass(frozen=True, init=False)
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

    def __init__(
        self,
        digest: str,
        blob: str,
        serializer: str,
        type_name: str,
        size: int,
        meta: dict[str, Any] | None = None,
    ) -> None:
        # What the generated __init__ does (one object.__setattr__ per field, since the
        # class is frozen) in one step: every executed step makes one for each output.
        self.__dict__.update(
            digest=digest,
            blob=blob,
            serializer=serializer,
            type_name=type_name,
            size=size,
            meta={} if meta is None else meta,
        )

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
    * An optional ``version`` attribute (a positive int, 1 when absent) names the version
      of the format the bytes are written in. Raise it whenever ``dump`` writes different
      bytes for a value, or ``load`` reads the same bytes differently (then the bytes must
      change too: an artifact is recorded once per digest). The registry records it in
      ``meta[FORMAT_VERSION_KEY]`` and it is part of every cache key, so a format change
      re-executes the steps instead of reusing results stored the old way. ``load`` gets
      records of older versions (records written before versions existed count as 1).
    * ``meta`` is a function of the value, like the digest. An optional ``reading_meta``
      attribute (a tuple of meta keys) names the keys ``load`` reads; step events record
      those with each output (how it is read), and they are part of its consumers' keys.
      Without it, all of ``meta`` is (docs/adr/0013-how-an-output-is-read.md).

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


def format_version(serializer: Serializer) -> int:
    """Return the format version a serializer writes (its ``version``, 1 when absent).

    Raises:
        SerializationError: ``version`` is not a positive int.
    """
    version = getattr(serializer, "version", 1)
    if type(version) is not int or version < 1:
        raise SerializationError(
            f"Serializer '{serializer.name}' has version {version!r}; a format version must "
            "be a positive int (raise it when the stored bytes change)."
        )
    return version


def recorded_format_version(record: StoredArtifact) -> int:
    """Return the format version an artifact was written in (1 for older records).

    Raises:
        SerializationError: the record holds a version that is not a positive int.
    """
    version = record.meta.get(FORMAT_VERSION_KEY, 1)
    if type(version) is not int or version < 1:
        raise SerializationError(
            f"Artifact {record.digest} records the format version {version!r} for its "
            f"'{record.serializer}' bytes, which is not a positive int; the record was not "
            "written by pipetrail. Run `pipetrail audit verify`."
        )
    return version
