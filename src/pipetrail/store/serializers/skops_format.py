"""The ``skops`` serializer: scikit-learn estimators without pickle.

Owns estimator storage. Values are handled when their class's module starts with
``sklearn.`` and they have ``get_params``. Bytes are ``skops.io.dumps`` output made
deterministic: skops names its inner files and ``__id__`` fields after ``id()`` of live
objects and stamps zip entries with the current time, so the zip is rewritten with those
ids renumbered in schema order, a fixed timestamp and no compression. The same fitted
model therefore gives the same digest on every run (the skops and scikit-learn versions
are part of the bytes).

Loading trusts only types from scikit-learn, numpy and scipy (plus skops' own defaults);
anything else is refused with :class:`~pipetrail.errors.SerializationError`.

skops is imported lazily. Imports only ``pipetrail.errors`` and the serializer base.
"""

from __future__ import annotations

import io
import json
import posixpath
from typing import TYPE_CHECKING, Any

from pipetrail.errors import SerializationError
from pipetrail.store.serializers.base import FORMAT_VERSION_KEY, StoredArtifact, qualified_type_name

if TYPE_CHECKING:
    import zipfile

    from pipetrail.store.base import ContentStore

__all__ = ["SkopsSerializer"]

_TRUSTED_ROOTS = frozenset({"sklearn", "numpy", "scipy"})
_SCHEMA = "schema.json"
_EPOCH = (1980, 1, 1, 0, 0, 0)


def _import_skops_io() -> Any:
    try:
        import skops.io as sio
    except ImportError as exc:
        raise SerializationError(
            "Storing scikit-learn estimators needs skops; install it with "
            "pip install 'pipetrail[sklearn]'."
        ) from exc
    return sio


def _renumber(node: Any, ids: dict[int, int], files: dict[str, str], names: set[str]) -> None:
    """Replace ``id()``-based ``__id__`` values and file names by first-seen counters."""
    if isinstance(node, list):
        for item in node:
            _renumber(item, ids, files, names)
        return
    if not isinstance(node, dict):
        return
    for key, item in node.items():
        if key == "__id__" and isinstance(item, int) and not isinstance(item, bool):
            node[key] = ids.setdefault(item, len(ids) + 1)
        elif key == "file" and isinstance(item, str) and item in names:
            if item not in files:
                files[item] = f"{len(files) + 1}{posixpath.splitext(item)[1]}"
            node[key] = files[item]
        else:
            _renumber(item, ids, files, names)


def _zip_entry(name: str) -> zipfile.ZipInfo:
    import zipfile

    info = zipfile.ZipInfo(name, date_time=_EPOCH)
    info.compress_type = zipfile.ZIP_STORED
    info.create_system = 3  # the default depends on the platform writing the zip
    info.external_attr = 0o644 << 16
    return info


def canonical_skops_bytes(data: bytes) -> bytes:
    """Return skops zip bytes rewritten so equal estimators give equal bytes."""
    import zipfile  # here, not at import: only runs that store an estimator pay for it

    with zipfile.ZipFile(io.BytesIO(data)) as src:
        names = set(src.namelist())
        schema = json.loads(src.read(_SCHEMA))
        files: dict[str, str] = {}
        _renumber(schema, {}, files, names - {_SCHEMA})
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as dst:
            dst.writestr(_zip_entry(_SCHEMA), json.dumps(schema, indent=2))
            for old, new in files.items():
                dst.writestr(_zip_entry(new), src.read(old))
    return out.getvalue()


class SkopsSerializer:
    """Stores scikit-learn estimators with skops (see the module docstring)."""

    name = "skops"
    version = 1

    def handles(self, value: Any) -> bool:
        """Return whether ``value`` is a scikit-learn estimator."""
        module = type(value).__module__
        return module.startswith("sklearn.") and hasattr(value, "get_params")

    def dump(self, value: Any, store: ContentStore) -> StoredArtifact:
        """Store the estimator.

        Raises:
            SerializationError: skops is not installed or cannot store the estimator.
        """
        sio = _import_skops_io()
        data = canonical_skops_bytes(sio.dumps(value))
        digest = store.put_bytes(data)
        return StoredArtifact(
            digest=digest,
            blob=digest,
            serializer=self.name,
            type_name=qualified_type_name(value),
            size=len(data),
            meta={"estimator": type(value).__qualname__, FORMAT_VERSION_KEY: self.version},
        )

    def load(self, record: StoredArtifact, store: ContentStore) -> Any:
        """Return the estimator, trusting only scikit-learn, numpy and scipy types.

        Raises:
            SerializationError: the artifact holds other types.
        """
        sio = _import_skops_io()
        data = store.get_bytes(record.blob)
        untrusted = sio.get_untrusted_types(data=data)
        refused = sorted(t for t in untrusted if t.split(".", 1)[0] not in _TRUSTED_ROOTS)
        if refused:
            raise SerializationError(
                f"skops artifact {record.digest} ({record.type_name}) contains types that are "
                f"not from scikit-learn, numpy or scipy: {', '.join(refused)}. Audit them, then "
                "load the bytes yourself with skops.io.loads(data, trusted=[...])."
            )
        return sio.loads(data, trusted=list(untrusted))
