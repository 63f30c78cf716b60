"""Row identities and seeded scores: the numbers that decide which row goes where.

Owns the 64-bit *identity* of each row of a table (computed from the values of all its
columns, or of the key columns) and the *score* a seed gives an identity. Every data
operation orders rows by score, so the same rows and seed give the same subsets on every
machine. Must not import pandas, polars, the ledger or the execution layer; numpy and
pyarrow are imported by the functions that need them.

**Identity.** Each column gives a 64-bit value per row, then the columns are folded in
the order given, each mixed with a digest of its name. A column's per-row value depends
only on the value, computed with integer arithmetic modulo 2**64, which is exact on
every platform:

* integers (any width, signed or not) are taken as their 64-bit two's complement value,
  so an ``int32`` 7 and an ``int64`` 7 are equal; floats are taken as float64 bits with
  ``-0.0`` folded into ``0.0`` and every NaN into one NaN; booleans as 0/1; dates, times,
  timestamps and durations as their integer counts (the unit is part of the type tag);
* strings and binaries: the sum over their bytes of a mix of (position, byte), then mixed
  with the length (computed once per distinct value when values repeat);
* nulls: one fixed value per type tag; dictionary (categorical) columns: their values;
* anything else (lists, structs, decimals): BLAKE3 of each row's value as text, which is
  slower (about a microsecond a row) but rare.

The mixer is the 64-bit finalizer of MurmurHash3 (``fmix64``), a bijection with full
avalanche. Per-row BLAKE3 would cost about a second per million rows in Python; BLAKE3
is used instead where one call covers many rows: column names, the seed key, and the
fallback above. Identities are 64-bit: two different rows share one with probability
about ``n**2 / 2**65`` (3e-8 for a million rows), which the leakage check accepts.

**Score.** ``score = fmix64(fmix64(identity ^ k1) ^ k2)`` where ``k1, k2`` are the first
16 bytes of BLAKE3 of the canonical bytes of ``["pipetrail.data/1", operation, seed]``.
Both steps are bijections, so equal identities (duplicate rows) get equal scores and
different identities different ones; ties are broken by row position.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from blake3 import blake3

from pipetrail.hashing import canonical_bytes

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["SCORE_VERSION", "column_identities", "fmix64", "row_identities", "scores"]

SCORE_VERSION = "pipetrail.data/1"

_C1 = 0xFF51AFD7ED558CCD
_C2 = 0xC4CEB9FE1A85EC53
_GOLDEN = 0x9E3779B97F4A7C15
_STRING_TAG = 0x5354524E47000000  # distinguishes string positions from other inputs
_NULL_TAG = 0x4E554C4C00000000


def _np() -> Any:
    import numpy as np

    return np


def fmix64(values: Any) -> Any:
    """Return MurmurHash3's 64-bit finalizer applied to a ``uint64`` array (a copy)."""
    np = _np()
    x = np.array(values, dtype=np.uint64, copy=True)
    x ^= x >> np.uint64(33)
    x *= np.uint64(_C1)
    x ^= x >> np.uint64(33)
    x *= np.uint64(_C2)
    x ^= x >> np.uint64(33)
    return x


def _tag(text: str) -> int:
    """Return a 64-bit constant for ``text`` (a type tag or a column name)."""
    return int.from_bytes(
        blake3(canonical_bytes(["pipetrail.data.tag", text])).digest()[:8], "little"
    )


def _fixed_width(pa: Any, np: Any, arr: Any) -> tuple[Any, str] | None:
    """Return ``(uint64 values, type tag)`` for fixed-width scalar columns, else None."""
    t = pa.types
    kind = arr.type
    if t.is_boolean(kind):
        values = arr.fill_null(False).to_numpy(zero_copy_only=False).astype(np.uint64)
        return values, "bool"
    if t.is_integer(kind):
        values = arr.fill_null(0).to_numpy(zero_copy_only=False)
        return values.astype(np.int64, copy=False).view(np.uint64), "int"
    if t.is_floating(kind):
        values = arr.fill_null(0.0).to_numpy(zero_copy_only=False).astype(np.float64)
        values[values == 0.0] = 0.0  # folds -0.0 into 0.0
        values[np.isnan(values)] = np.nan
        return values.view(np.uint64), "float"
    if t.is_temporal(kind) and kind.bit_width in (32, 64):
        width = kind.bit_width
        as_int = arr.view(pa.int64() if width == 64 else pa.int32())
        values = as_int.fill_null(0).to_numpy(zero_copy_only=False)
        return values.astype(np.int64, copy=False).view(np.uint64), f"temporal:{kind}"
    return None


def _bytes_identities(pa: Any, np: Any, arr: Any) -> Any:
    """Return per-row identities of a string or binary array (see the module docstring)."""
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.large_string())
    else:
        arr = arr.cast(pa.large_binary())
    n = len(arr)
    offsets_buffer, data_buffer = arr.buffers()[1], arr.buffers()[2]
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[arr.offset : arr.offset + n + 1]
    first = int(offsets[0]) if n else 0
    last = int(offsets[-1]) if n else 0
    lengths = np.diff(offsets).astype(np.uint64)
    if last > first and data_buffer is not None:
        data = np.frombuffer(data_buffer, dtype=np.uint8)[first:last]
        starts = (offsets[:-1] - first).astype(np.int64)
        position = np.arange(last - first, dtype=np.int64)
        position -= np.repeat(starts, lengths.astype(np.int64))
        terms = position.astype(np.uint64)
        terms <<= np.uint64(8)
        terms |= data
        terms ^= np.uint64(_STRING_TAG)
        terms = fmix64(terms)
        sums = np.zeros(last - first + 1, dtype=np.uint64)
        np.cumsum(terms, out=sums[1:])
        totals = sums[offsets[1:] - first] - sums[starts]
    else:
        totals = np.zeros(n, dtype=np.uint64)
    return fmix64(totals ^ fmix64(lengths * np.uint64(_GOLDEN) + np.uint64(_STRING_TAG)))


def _distinct_then_bytes(pa: Any, np: Any, arr: Any) -> Any:
    """Hash each distinct value once (string columns often repeat a few values)."""
    encoded = arr.dictionary_encode()
    if len(encoded.dictionary) * 2 > len(arr):
        return _bytes_identities(pa, np, arr)
    distinct = _bytes_identities(pa, np, encoded.dictionary)
    indices = encoded.indices.fill_null(0).to_numpy(zero_copy_only=False)
    return distinct[indices]


def _text_of(value: Any) -> Any:
    """Return a JSON-like form of a Python value from ``to_pylist`` (for the fallback)."""
    if isinstance(value, dict):
        return {str(k): _text_of(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_text_of(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    return {"$" + type(value).__name__: str(value)}


def _fallback_identities(np: Any, arr: Any) -> Any:
    out = np.empty(len(arr), dtype=np.uint64)
    for i, value in enumerate(arr.to_pylist()):
        digest = blake3(canonical_bytes(_text_of(value))).digest()
        out[i] = int.from_bytes(digest[:8], "little")
    return out


def column_identities(arr: Any) -> Any:
    """Return one ``uint64`` per row of a pyarrow Array or ChunkedArray (its values only).

    Args:
        arr: the column.
    """
    import pyarrow as pa

    np = _np()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.large_string())
    if pa.types.is_binary_view(arr.type):
        arr = arr.cast(pa.large_binary())
    t = pa.types
    fixed = _fixed_width(pa, np, arr)
    if fixed is not None:
        values, tag = fixed
        result = fmix64(values ^ np.uint64(_tag(tag)))
        kind = tag
    elif t.is_string(arr.type) or t.is_large_string(arr.type):
        result, kind = _distinct_then_bytes(pa, np, arr), "string"
    elif t.is_binary(arr.type) or t.is_large_binary(arr.type):
        result, kind = _distinct_then_bytes(pa, np, arr), "binary"
    elif t.is_null(arr.type):
        return np.full(len(arr), _NULL_TAG, dtype=np.uint64)
    else:
        result, kind = _fallback_identities(np, arr), str(arr.type)
    if arr.null_count:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        result[~valid] = np.uint64(_NULL_TAG ^ (_tag(kind) & 0xFFFFFFFF))
    return result


def row_identities(columns: Sequence[tuple[str, Any]], rows: int) -> Any:
    """Return one ``uint64`` identity per row from named columns, folded in order.

    Args:
        columns: ``(name, pyarrow array)`` pairs, in the order they are folded.
        rows: the number of rows (used when there are no columns: all rows are equal).
    """
    np = _np()
    identity = np.full(rows, _GOLDEN, dtype=np.uint64)
    for name, arr in columns:
        mixed = column_identities(arr) ^ np.uint64(_tag("column:" + name))
        identity = fmix64(identity * np.uint64(_C1) + mixed)
    return identity


def scores(identities: Any, operation: str, seed: int) -> Any:
    """Return the seeded score of each identity (see the module docstring).

    Args:
        identities: ``uint64`` identities.
        operation: the operation's name (``"split"``, ``"sample"``, ``"split.strata"``),
            so one seed gives unrelated orders to different operations.
        seed: a validated seed.
    """
    np = _np()
    key = blake3(canonical_bytes([SCORE_VERSION, operation, seed])).digest()
    k1 = np.uint64(int.from_bytes(key[:8], "little"))
    k2 = np.uint64(int.from_bytes(key[8:16], "little"))
    return fmix64(fmix64(identities ^ k1) ^ k2)
