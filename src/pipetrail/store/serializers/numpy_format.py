"""The ``npy`` serializer: numpy arrays and numpy scalars in the ``.npy`` format.

Owns array storage. Arrays are written C-contiguous with ``np.save(allow_pickle=False)``,
so equal arrays give equal digests whatever their memory layout; object arrays are refused
(they would need pickle). Numpy scalars are stored as 0-d arrays and come back as the same
scalar type (``meta["scalar"]``). Only exact ``numpy.ndarray`` is handled: subclasses
(masked arrays, matrices) carry extra state that ``.npy`` would silently drop.

numpy is imported lazily; :meth:`NpySerializer.handles` only looks in ``sys.modules``.
Imports only ``pipetrail.errors`` and the serializer base.
"""

from __future__ import annotations

import io
import sys
from typing import TYPE_CHECKING, Any

from pipetrail.errors import SerializationError
from pipetrail.store.serializers.base import FORMAT_VERSION_KEY, StoredArtifact

if TYPE_CHECKING:
    from pipetrail.store.base import ContentStore

__all__ = ["NpySerializer"]


def _is_numpy(value: Any) -> bool:
    np = sys.modules.get("numpy")
    if np is None:
        return False
    return type(value) is np.ndarray or isinstance(value, np.generic)


class NpySerializer:
    """Stores numpy arrays and scalars as ``.npy`` bytes (see the module docstring)."""

    name = "npy"
    version = 1

    def handles(self, value: Any) -> bool:
        """Return whether ``value`` is a numpy array (not of dtype object) or scalar."""
        return _is_numpy(value) and not value.dtype.hasobject

    def refusal(self, value: Any) -> str | None:
        """Explain why a numpy value is not handled, for the registry's error message."""
        if _is_numpy(value) and value.dtype.hasobject:
            return (
                f"numpy arrays of dtype {value.dtype} hold Python objects, which npy cannot "
                "store without pickle; convert it with .astype(...) to a fixed dtype"
            )
        return None

    def dump(self, value: Any, store: ContentStore) -> StoredArtifact:
        """Store the array or scalar.

        Raises:
            SerializationError: the value is not a numpy array/scalar, or has dtype object.
        """
        import numpy as np

        if not _is_numpy(value):
            raise SerializationError(
                f"npy stores numpy arrays and scalars, not {type(value).__qualname__}; "
                "convert it with numpy.asarray(...) first."
            )
        reason = self.refusal(value)
        if reason is not None:
            raise SerializationError(reason[0].upper() + reason[1:] + ".")
        scalar = isinstance(value, np.generic)
        # ascontiguousarray turns 0-d arrays into 1-d ones; 0-d arrays are contiguous anyway.
        array = np.asarray(value) if scalar or value.ndim == 0 else np.ascontiguousarray(value)
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        data = buffer.getvalue()
        digest = store.put_bytes(data)
        return StoredArtifact(
            digest=digest,
            blob=digest,
            serializer=self.name,
            type_name=f"numpy.{type(value).__name__}",
            size=len(data),
            meta={
                "dtype": str(array.dtype),
                "shape": list(array.shape),
                "scalar": scalar,
                FORMAT_VERSION_KEY: self.version,
            },
        )

    def load(self, record: StoredArtifact, store: ContentStore) -> Any:
        """Return the stored array (or scalar, if a scalar was stored)."""
        import numpy as np

        with store.open(record.blob) as f:
            array = np.load(f, allow_pickle=False)
        return array[()] if record.meta.get("scalar") else array
