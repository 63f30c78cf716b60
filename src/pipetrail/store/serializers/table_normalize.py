"""Normalized Arrow tables: one identity for equal data, whichever library built it.

Owns the table digest used by the ``parquet`` serializer. pandas, pyarrow and polars
describe equal data differently (string vs large_string vs string_view, index columns,
schema metadata, chunking, and bytes left under null slots), so the digest is taken over a
normalized copy, built by :func:`normalize_table`:

1. Schema metadata and field metadata are dropped; every field becomes nullable.
2. Types are mapped to one spelling, recursively: ``large_string``/``string_view`` ->
   ``string``, ``large_binary``/``binary_view`` -> ``binary``, ``large_list``/list views ->
   ``list`` (child named ``item``), run-end encoded -> its values' type. Dictionary
   (categorical) columns are decoded to their values' type and marked with field metadata
   ``pipetrail.dictionary = ordered|unordered``, so a categorical column and a plain string
   column with the same values still get different digests.
3. Chunks are combined into one array per column.
4. Bytes with no meaning are zeroed: values under null slots, unused bits of bitmaps, and
   the ranges of null list/string slots, so the producer's leftovers cannot leak in.

:func:`table_digest` hashes a version tag followed by the Arrow IPC stream (no compression)
of the normalized table written as one record batch. Equal data -- same column names and
order, same normalized logical types, same values and nulls -- gives the same digest;
timestamp units and time zones, integer widths and float widths are kept, so they count.
pandas-specific facts (index, extension dtypes) live in the stored artifact's meta, not in
the digest. The IPC encoding is defined by the Arrow columnar format spec, which is stable
across pyarrow versions.

pyarrow and numpy are imported lazily. Imports only ``pipetrail.hashing``.
"""

from __future__ import annotations

from typing import Any

from pipetrail.hashing import Hasher, digest_value

__all__ = ["normalize_table", "schema_entries", "schema_fingerprint", "table_digest"]

_TAG = b"pt-table1\x00"
_DICTIONARY_KEY = b"pipetrail.dictionary"


def _normal_type(pa: Any, kind: Any) -> Any:
    t = pa.types
    if t.is_large_string(kind) or t.is_string_view(kind):
        return pa.string()
    if t.is_large_binary(kind) or t.is_binary_view(kind):
        return pa.binary()
    if t.is_dictionary(kind):
        return _normal_type(pa, kind.value_type)
    if t.is_run_end_encoded(kind):
        return _normal_type(pa, kind.value_type)
    if (
        t.is_list(kind)
        or t.is_large_list(kind)
        or t.is_list_view(kind)
        or t.is_large_list_view(kind)
    ):
        return pa.list_(_normal_type(pa, kind.value_type))
    if t.is_fixed_size_list(kind):
        return pa.list_(_normal_type(pa, kind.value_type), kind.list_size)
    if t.is_struct(kind):
        return pa.struct([_normal_field(pa, kind.field(i)) for i in range(kind.num_fields)])
    if t.is_map(kind):
        return pa.map_(_normal_type(pa, kind.key_type), _normal_type(pa, kind.item_type))
    return kind


def _normal_field(pa: Any, field: Any) -> Any:
    return pa.field(field.name, _normal_type(pa, field.type), nullable=True)


def _validity(arr: Any) -> Any:
    return arr.is_valid().to_numpy(zero_copy_only=False)


def _bitmap(pa: Any, np: Any, bits: Any) -> Any:
    return pa.py_buffer(np.packbits(bits, bitorder="little"))


def _canonical_array(pa: Any, np: Any, arr: Any) -> Any:
    """Return ``arr`` rebuilt so that equal data has equal buffers (see step 4)."""
    t = pa.types
    kind = arr.type
    n = len(arr)
    nulls = arr.null_count
    if t.is_null(kind) or isinstance(kind, pa.ExtensionType):
        return arr
    if t.is_boolean(kind):
        values = arr.fill_null(False).to_numpy(zero_copy_only=False)
        validity = _bitmap(pa, np, _validity(arr)) if nulls else None
        return pa.Array.from_buffers(kind, n, [validity, _bitmap(pa, np, values)], nulls)
    if t.is_string(kind) or t.is_binary(kind):
        if not nulls:
            return arr  # the IPC writer rebases offsets and trims the data buffer itself
        filled = arr.fill_null(pa.scalar("" if t.is_string(kind) else b"", kind))
        buffers = [_bitmap(pa, np, _validity(arr)), *filled.buffers()[1:]]
        return pa.Array.from_buffers(kind, n, buffers, nulls, filled.offset)
    if t.is_struct(kind):
        children = [_canonical_array(pa, np, child) for child in arr.flatten()]
        mask = pa.array(~_validity(arr)) if nulls else None
        return pa.StructArray.from_arrays(children, fields=list(kind), mask=mask)
    if t.is_list(kind):
        lengths = arr.value_lengths().fill_null(0).to_numpy(zero_copy_only=False)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        values = _canonical_array(pa, np, arr.flatten())
        mask = pa.array(~_validity(arr)) if nulls else None
        return pa.ListArray.from_arrays(pa.array(offsets), values, type=kind, mask=mask)
    try:
        width = kind.bit_width // 8
    except ValueError:
        width = 0
    if width and kind.bit_width % 8 == 0:
        if not nulls:
            return arr
        valid = _validity(arr)
        raw = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
        raw = raw[arr.offset * width : (arr.offset + n) * width].reshape(n, width).copy()
        raw[~valid] = 0
        return pa.Array.from_buffers(kind, n, [_bitmap(pa, np, valid), pa.py_buffer(raw)], nulls)
    # Rare layouts (maps, fixed-size lists, unions): rebuilding through Python values gives
    # builder-made, zero-initialised buffers.
    return pa.array(arr.to_pylist(), type=kind)


def normalize_table(table: Any) -> Any:
    """Return the normalized form of a ``pyarrow.Table`` (see the module docstring).

    Returns:
        A ``pyarrow.RecordBatch`` holding the normalized columns.
    """
    import numpy as np
    import pyarrow as pa

    fields = []
    arrays = []
    for field, column in zip(table.schema, table.columns, strict=True):
        target = _normal_type(pa, field.type)
        metadata = None
        if pa.types.is_dictionary(field.type):
            metadata = {_DICTIONARY_KEY: b"ordered" if field.type.ordered else b"unordered"}
        chunks = column.cast(target).chunks if column.type != target else column.chunks
        arr = pa.concat_arrays(chunks) if chunks else pa.array([], type=target)
        arrays.append(_canonical_array(pa, np, arr))
        fields.append(pa.field(field.name, target, nullable=True, metadata=metadata))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


class _HashingSink:
    """A write-only file object feeding a :class:`Hasher` (so nothing is buffered)."""

    def __init__(self, hasher: Hasher) -> None:
        self._hasher = hasher
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self._hasher.update(view)
        return view.nbytes

    def flush(self) -> None:
        """Nothing to flush."""

    def close(self) -> None:
        self.closed = True


def table_digest(batch: Any) -> str:
    """Return the digest of a normalized batch from :func:`normalize_table`."""
    import pyarrow as pa

    hasher = Hasher()
    hasher.update(_TAG)
    sink = pa.PythonFile(_HashingSink(hasher), mode="w")
    options = pa.ipc.IpcWriteOptions(compression=None, use_threads=False)
    with pa.ipc.new_stream(sink, batch.schema, options=options) as writer:
        writer.write_batch(batch)
    return hasher.digest()


def schema_entries(batch: Any) -> list[dict[str, str]]:
    """Return ``[{"name", "type"}, ...]`` of a normalized batch (dictionaries marked)."""
    entries = []
    for field in batch.schema:
        kind = str(field.type)
        marker = (field.metadata or {}).get(_DICTIONARY_KEY)
        if marker is not None:
            kind = f"dictionary<values={kind}, ordered={int(marker == b'ordered')}>"
        entries.append({"name": field.name, "type": kind})
    return entries


def schema_fingerprint(entries: list[dict[str, str]]) -> str:
    """Return the digest of a schema's names and types, in column order."""
    return digest_value([[entry["name"], entry["type"]] for entry in entries])
