"""Choosing a serializer for a value, and the shared default registry.

Owns :class:`SerializerRegistry`, :func:`default_registry` and :func:`register_serializer`.
Built-ins are tried in this order: ``json``, ``bytes``, ``file``, ``folder``, ``parquet``,
``npy``, ``skops``; user serializers are appended after them unless registered with
``first=True``. ``pickle`` is never chosen by type: it is the fallback used only when the
caller passes ``allow_pickle=True`` and no other serializer handles the value.

Every record a registry writes carries its serializer's format version in
``meta["format_version"]``; loading refuses a record written in a newer version than the
registered serializer reads. :meth:`SerializerRegistry.format_versions` (spelled as
:meth:`SerializerRegistry.formats_label`) is part of every cache key, so a format change
re-executes steps instead of reusing results stored the old way.

How a value is read back is a fact of the record a dump returned, not of its digest:
equal bytes (a ``bytes`` output and a source file, ``b"1"`` and ``1``) are one artifact,
read differently. :meth:`SerializerRegistry.reading` reduces a record to what decides
the value a load returns (the serializer and format version, the type, the meta keys its
``load`` reads, and the stored object when it is not the digest's), which step events
record per output; :func:`record_from_reading` turns it back into a record to load
(docs/adr/0013-how-an-output-is-read.md).

Nothing is registered at import time; the shared registry is built on first use and only
changes when user code calls :func:`register_serializer`; whether a serializer registered
under a taken name is the earlier one defined again is decided by
:mod:`pipetrail.store.serializers.identity`. Imports only the built-in serializer modules
(which import heavy libraries lazily), ``identity``, ``pipetrail.hashing`` and
``pipetrail.errors``.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import TYPE_CHECKING, Any

from pipetrail.errors import PipetrailError, SerializationError
from pipetrail.hashing import canonical_bytes, digest_bytes
from pipetrail.store.serializers.base import (
    FORMAT_VERSION_KEY,
    Serializer,
    StoredArtifact,
    format_version,
    qualified_type_name,
    recorded_format_version,
)
from pipetrail.store.serializers.bytes_format import BytesSerializer
from pipetrail.store.serializers.file_format import FileSerializer
from pipetrail.store.serializers.folder_format import FolderSerializer
from pipetrail.store.serializers.identity import same_serializer, serializer_origin
from pipetrail.store.serializers.json_format import JsonSerializer
from pipetrail.store.serializers.numpy_format import NpySerializer
from pipetrail.store.serializers.parquet_format import ParquetSerializer
from pipetrail.store.serializers.pickle_format import PickleSerializer
from pipetrail.store.serializers.skops_format import SkopsSerializer

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pipetrail.store.base import ContentStore

__all__ = [
    "SerializerRegistry",
    "default_registry",
    "reading_label",
    "record_from_reading",
    "register_serializer",
]

_HINT = (
    "register a serializer with pipetrail.register_serializer(...), or pass "
    "allow_pickle=True to @step if you trust this artifact"
)


# The meta keys each built-in format's ``load`` reads; the rest of their meta describes the
# content (a schema, a shape), which the digest already decides. A serializer may declare
# its own as ``reading_meta``; without it, all of its meta counts.
_READ_META: dict[type, tuple[str, ...]] = {
    JsonSerializer: (),
    BytesSerializer: ("python_type",),
    FileSerializer: ("name",),
    FolderSerializer: (),
    ParquetSerializer: ("library", "pandas"),
    NpySerializer: ("scalar",),
    SkopsSerializer: (),
    PickleSerializer: ("trusted",),
}
_READING_KEYS = frozenset({"format", "type_name", "size", "meta", "blob", "sealed"})
# A sealed (encrypted) object's record says so in meta["sealed"] (its sealing version):
# it is read through a SealedStore (pipetrail.store.sealed), whatever the serializer.
_SEALED_KEY = "sealed"


def _reading_meta(serializer: Serializer) -> tuple[str, ...] | None:
    """The meta keys ``serializer.load`` reads (None: all of them).

    Raises:
        SerializationError: ``reading_meta`` is not a tuple or list of strings.
    """
    keys = getattr(serializer, "reading_meta", None)
    if keys is None:
        return _READ_META.get(type(serializer))
    if not isinstance(keys, tuple | list) or not all(isinstance(k, str) for k in keys):
        raise SerializationError(
            f"Serializer '{serializer.name}' has reading_meta {keys!r}; it must be a tuple of "
            "the meta keys its load() reads."
        )
    return tuple(keys)


def _subject(step: str | None, output: str | None = None) -> str:
    if not step:
        return "Value"
    if output and output != "output":
        return f"Step '{step}' output '{output}'"
    return f"Step '{step}' output"


class SerializerRegistry:
    """An ordered set of serializers, plus an opt-in pickle fallback.

    Thread-safe: registration copies the list, lookups read a snapshot.

    Args:
        serializers: serializers to try, in priority order.
        fallback: the serializer used when ``allow_pickle=True`` and nothing else handles
            a value (normally :class:`PickleSerializer`); None disables the fallback.

    Example:
        >>> registry = SerializerRegistry.with_builtins()
        >>> registry.for_value({"a": 1}, allow_pickle=False, step=None).name
        'json'
    """

    def __init__(
        self, serializers: Iterable[Serializer] = (), *, fallback: Serializer | None = None
    ) -> None:
        self._serializers: tuple[Serializer, ...] = ()
        self._fallback = fallback
        self._versions: dict[str, int] = {}
        if fallback is not None:
            self._versions[fallback.name] = format_version(fallback)
        self._label = _label(self._versions)
        self._lock = threading.Lock()
        for serializer in serializers:
            self.register(serializer)

    @classmethod
    def with_builtins(cls) -> SerializerRegistry:
        """Return a new, independent registry holding the built-in serializers."""
        return cls(
            [
                JsonSerializer(),
                BytesSerializer(),
                FileSerializer(),
                FolderSerializer(),
                ParquetSerializer(),
                NpySerializer(),
                SkopsSerializer(),
            ],
            fallback=PickleSerializer(),
        )

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the serializers tried by type, in priority order (no fallback)."""
        return tuple(s.name for s in self._serializers)

    def format_versions(self) -> dict[str, int]:
        """Return serializer name -> the format version it writes (fallback included).

        Part of every step's cache key (as :meth:`formats_label`): raising a serializer's
        version (or registering another serializer) re-executes steps rather than reusing
        outputs stored by a different set of formats.
        """
        return dict(self._versions)

    def formats_label(self) -> str:
        """Return :meth:`format_versions` as one short string: ``"bytes@1 ... skops@1"``.

        Sorted by name. It is what cache keys and step records hold (one string is
        cheaper to encode and hash for every step than a dict).
        """
        return self._label

    def register(self, serializer: Serializer, *, first: bool = False) -> None:
        """Add a serializer, tried after the existing ones (or before, with ``first=True``).

        Registering the same instance twice is a no-op. Registering the same serializer
        again (an instance of a class of the same qualified name defined in the same file,
        or with the same source: a pipeline file or notebook cell run again in one
        process) replaces the earlier entry in place (or moves it first, with
        ``first=True``); its format version is taken anew, so a changed version changes
        :meth:`formats_label`, and with it the cache keys, as a new process would.

        Raises:
            SerializationError: a different serializer already uses the same name (the
                message says where each is defined), or its ``version`` is not a
                positive int.
        """
        if not isinstance(serializer, Serializer):
            raise SerializationError(
                f"{serializer!r} is not a serializer; give it a 'name' attribute and "
                "handles(value), dump(value, store) and load(record, store) methods."
            )
        version = format_version(serializer)
        _reading_meta(serializer)  # a malformed reading_meta fails here, not at a load
        with self._lock:
            if any(s is serializer for s in self._serializers):
                return
            if self._fallback is not None and self._fallback.name == serializer.name:
                raise SerializationError(
                    f"A serializer named '{serializer.name}' is already registered: it is "
                    f"the fallback, {serializer_origin(self._fallback)}; give "
                    f"{serializer_origin(serializer)} a different 'name'."
                )
            taken = [s for s in self._serializers if s.name == serializer.name]
            if taken and not same_serializer(taken[0], serializer):
                raise SerializationError(
                    f"A serializer named '{serializer.name}' is already registered: "
                    f"{serializer_origin(taken[0])}; {serializer_origin(serializer)} cannot "
                    "take its name. "
                    "Give one of them a different 'name' (a stored artifact records the "
                    "name of the serializer that reads it back)."
                )
            if taken:
                earlier = taken[0]
                kept = tuple(s for s in self._serializers if s is not earlier)
                self._serializers = (
                    (serializer, *kept)
                    if first
                    else tuple(serializer if s is earlier else s for s in self._serializers)
                )
            elif first:
                self._serializers = (serializer, *self._serializers)
            else:
                self._serializers = (*self._serializers, serializer)
            self._versions = {**self._versions, serializer.name: version}
            self._label = _label(self._versions)

    def reading(self, record: StoredArtifact) -> dict[str, Any]:
        """Return how the value ``record`` describes is read back (see the module docstring).

        Keys: ``format`` (``"bytes@1"``: serializer and the format version the record was
        written in), ``type_name``, ``size``, ``meta`` (the keys the serializer's
        ``load`` reads: its ``reading_meta``; all of it for a serializer that declares
        none or is not registered here) and, only when the stored object is not the
        digest's, ``blob``. :func:`record_from_reading` is the inverse, for loading.

        Raises:
            SerializationError: the record's format version is not a positive int.
        """
        version = recorded_format_version(record)
        keys: tuple[str, ...] | None = None
        try:
            keys = _reading_meta(self.by_name(record.serializer))
        except SerializationError:
            keys = None  # not registered here: keep every key, loading needs them all
        meta = (
            {k: v for k, v in record.meta.items() if k != FORMAT_VERSION_KEY}
            if keys is None
            else {k: record.meta[k] for k in keys if k in record.meta}
        )
        found: dict[str, Any] = {
            "format": f"{record.serializer}@{version}",
            "type_name": record.type_name,
            "size": record.size,
            "meta": meta,
        }
        if record.blob != record.digest:
            found["blob"] = record.blob
        if record.meta.get(_SEALED_KEY):
            found[_SEALED_KEY] = record.meta[_SEALED_KEY]
        return found

    def by_name(self, name: str) -> Serializer:
        """Return the serializer recorded as ``name`` in a :class:`StoredArtifact`.

        Raises:
            SerializationError: no serializer has this name.
        """
        for serializer in self._serializers:
            if serializer.name == name:
                return serializer
        if self._fallback is not None and self._fallback.name == name:
            return self._fallback
        raise SerializationError(
            f"No serializer named '{name}' is registered (known: {', '.join(self.names)}); "
            "register the serializer that wrote this artifact with "
            "pipetrail.register_serializer(...) before loading it."
        )

    def for_value(
        self,
        value: Any,
        *,
        allow_pickle: bool = False,
        step: str | None = None,
        output: str | None = None,
    ) -> Serializer:
        """Return the first serializer that handles ``value``.

        Args:
            value: the value to store.
            allow_pickle: fall back to pickle when nothing else handles the value.
            step: the step that produced the value, named in errors.
            output: the name of the step's output, named in errors.

        Raises:
            SerializationError: nothing handles the value (and pickle is not allowed); a
                container's message names the first item that is not plain data
                (``output['mean']: <type>``).
        """
        for serializer in self._serializers:
            if serializer.handles(value):
                return serializer
        if allow_pickle and self._fallback is not None:
            return self._fallback
        reasons = [
            reason
            for serializer in self._serializers
            if (reason := _refusal(serializer, value, output or "output"))
        ]
        detail = f" ({'; '.join(reasons)})" if reasons else ""
        raise SerializationError(
            f"{_subject(step, output)} of type {qualified_type_name(value)} has no serializer"
            f"{detail}; {_HINT}."
        )

    def dump(
        self,
        value: Any,
        store: ContentStore,
        *,
        allow_pickle: bool = False,
        step: str | None = None,
        output: str | None = None,
    ) -> StoredArtifact:
        """Store ``value`` with the serializer chosen by :meth:`for_value`.

        The record's ``meta["format_version"]`` is the serializer's format version.

        Raises:
            SerializationError: no serializer handles the value, or the serializer failed
                (the message names the step, the type and the serializer).
            StoreError: the store could not write the bytes.
        """
        serializer = self.for_value(value, allow_pickle=allow_pickle, step=step, output=output)
        try:
            record = serializer.dump(value, store)
        except SerializationError as exc:
            if step is None:
                raise
            raise SerializationError(f"Step '{step}': {exc}") from exc
        except PipetrailError:
            raise
        except Exception as exc:
            raise SerializationError(
                f"{_subject(step, output)} of type {qualified_type_name(value)} could not be "
                f"stored by the '{serializer.name}' serializer: {type(exc).__name__}: {exc}. "
                f"Fix the value, or {_HINT}."
            ) from exc
        version = self._versions.get(serializer.name) or format_version(serializer)
        if record.meta.get(FORMAT_VERSION_KEY) != version:
            record = dataclasses.replace(record, meta={**record.meta, FORMAT_VERSION_KEY: version})
        return record

    def load(self, record: StoredArtifact, store: ContentStore) -> Any:
        """Read back the value described by ``record``.

        Raises:
            SerializationError: the serializer is unknown, reads an older format version
                than the record's, or failed to read the bytes.
            NotFoundError: the stored object is missing.
            IntegrityError: the stored bytes do not match their digest.
        """
        serializer = self.by_name(record.serializer)
        written = recorded_format_version(record)
        readable = self._versions.get(serializer.name) or format_version(serializer)
        if written > readable:
            raise SerializationError(
                f"Artifact {record.digest} ({record.type_name}) was written in version "
                f"{written} of the '{serializer.name}' format, and the registered serializer "
                f"reads versions up to {readable}; upgrade pipetrail (or the package that "
                "provides this serializer) to load it."
            )
        if record.meta.get(_SEALED_KEY) and not getattr(store, "keys", None):
            # A sealed object read as plaintext would be ciphertext handed to the format.
            raise SerializationError(
                f"Artifact {record.digest} ({record.type_name}) is sensitive and stored "
                "encrypted; load it through its project (Project.store_for), which holds "
                "the keys."
            )
        try:
            return serializer.load(record, store)
        except PipetrailError:
            raise
        except Exception as exc:
            raise SerializationError(
                f"Artifact {record.digest} ({record.type_name}) could not be loaded by the "
                f"'{serializer.name}' serializer: {type(exc).__name__}: {exc}. Check that the "
                "library that wrote it is installed in a compatible version."
            ) from exc


def record_from_reading(digest: str, reading: Any) -> StoredArtifact:
    """Return the record to load artifact ``digest`` with, as ``reading`` says to read it.

    ``reading`` is what :meth:`SerializerRegistry.reading` returned (as a step event
    records it); the record's meta holds the keys the serializer's ``load`` reads.

    Raises:
        SerializationError: ``reading`` is not such a description (naming the artifact).
    """
    if type(reading) is dict and reading.keys() == _BASIC_READING_KEYS:
        # The common reading (no other stored object, not sealed): checked as
        # _reading_problem checks it, its format's parts remembered.
        found = reading["format"]
        parts = _FORMAT_PARTS.get(found) if type(found) is str else None
        type_name, size, meta = reading["type_name"], reading["size"], reading["meta"]
        if (
            parts is not None
            and isinstance(type_name, str)
            and type(size) is int
            and size >= 0
            and isinstance(meta, dict)
        ):
            return StoredArtifact(
                digest, digest, parts[0], type_name, size, {**meta, FORMAT_VERSION_KEY: parts[1]}
            )
    problem = _reading_problem(reading)
    if problem is not None:
        raise SerializationError(
            f"The record of how artifact {digest} is read is not one this pipetrail can "
            f"follow ({problem}); upgrade pipetrail if a newer version wrote it, else run "
            "`pipetrail audit verify`."
        )
    name, _, version = reading["format"].rpartition("@")
    if type(reading["format"]) is str and len(_FORMAT_PARTS) < _FORMAT_PARTS_MAX:
        _FORMAT_PARTS[reading["format"]] = (name, int(version))
    return StoredArtifact(
        digest=digest,
        blob=reading.get("blob", digest),
        serializer=name,
        type_name=reading["type_name"],
        size=reading["size"],
        meta={
            **reading["meta"],
            FORMAT_VERSION_KEY: int(version),
            **({_SEALED_KEY: reading[_SEALED_KEY]} if reading.get(_SEALED_KEY) else {}),
        },
    )


# The keys of a reading of the digest's own object, not sealed; and the format texts of
# readings found valid -> (serializer name, format version). Bounded: once full, other
# formats take the full check.
_BASIC_READING_KEYS = frozenset({"format", "type_name", "size", "meta"})
_FORMAT_PARTS: dict[str, tuple[str, int]] = {}
_FORMAT_PARTS_MAX = 256


def _reading_problem(reading: Any) -> str | None:
    if not isinstance(reading, dict):
        return f"{type(reading).__name__}, not an object"
    unknown = set(reading) - _READING_KEYS
    if unknown:
        return f"unknown keys {sorted(unknown)}"
    name, _, version = str(reading.get("format", "")).rpartition("@")
    if not isinstance(reading.get("format"), str) or not name or not version.isdigit():
        return f"format {reading.get('format')!r} is not NAME@VERSION"
    if int(version) < 1:
        return f"format version {version} is not positive"
    if not isinstance(reading.get("type_name"), str):
        return "no type_name"
    size = reading.get("size")
    if type(size) is not int or size < 0:
        return f"size {size!r} is not a count of bytes"
    if not isinstance(reading.get("meta"), dict):
        return "meta is not an object"
    if "blob" in reading and not isinstance(reading["blob"], str):
        return "blob is not a digest"
    if _SEALED_KEY in reading and reading[_SEALED_KEY] != 1:
        return f"sealing version {reading[_SEALED_KEY]!r} is not 1"
    return None


def reading_label(reading: dict[str, Any]) -> str:
    """Return one line naming a reading, as cache keys hold it for each loaded input.

    ``"bytes@1 builtins.bytes 1a2b3c4d5e6f"``: the format, the type, and 12 hex digits of
    the digest of the whole reading (so meta a load reads, or another stored object,
    gives another label even when the format and type are equal).
    """
    encoded = canonical_bytes(reading)
    found = _LABELS.get(encoded)
    if found is None:
        found = f"{reading['format']} {reading['type_name']} {digest_bytes(encoded)[7:19]}"
        if len(_LABELS) >= _LABELS_MAX:
            _LABELS.clear()
        _LABELS[encoded] = found
    return found


# The canonical bytes of a reading -> its label: the outputs of most steps are read
# alike (same format, type, size and meta), so most labels are made once. Bounded.
_LABELS: dict[bytes, str] = {}
_LABELS_MAX = 4096


def _label(versions: dict[str, int]) -> str:
    return " ".join(f"{name}@{version}" for name, version in sorted(versions.items()))


def _refusal(serializer: Serializer, value: Any, root: str) -> str | None:
    """Ask a serializer why it refused ``value`` (serializers may say nothing)."""
    if isinstance(serializer, JsonSerializer):
        return serializer.refusal(value, root)
    explain = getattr(serializer, "refusal", None)
    reason = explain(value) if callable(explain) else None
    return reason if isinstance(reason, str) else None


_default: SerializerRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> SerializerRegistry:
    """Return the shared registry (built-ins plus anything passed to register_serializer).

    Use :meth:`SerializerRegistry.with_builtins` for an independent registry.
    """
    global _default  # the one shared registry, created on first use
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = SerializerRegistry.with_builtins()
    return _default


def register_serializer(serializer: Serializer, *, first: bool = False) -> None:
    """Add ``serializer`` to the shared default registry (an explicit user action).

    Args:
        serializer: the serializer to add.
        first: try it before the built-ins (to override how a built-in type is stored).

    Raises:
        SerializationError: a different serializer already has the name, or the object is
            not a serializer.
    """
    default_registry().register(serializer, first=first)
