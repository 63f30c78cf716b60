"""Table profiles: a small, deterministic summary of a table's columns, computed when stored.

Owns what a profile holds and how it is computed. The ``parquet`` serializer profiles the
normalized form of every table it stores (one chunk per column, so equal data gives equal
input) and stores the profile as canonical JSON beside the table; the table's artifact
meta links it (``meta["profile"] = {"digest": ..., "size": ...}``). A profile is derived
data: it is not part of the table's digest, nor of any reading or cache key.

A profile (``schema_version`` 1)::

    {"schema_version": 1, "rows": 1000000,
     "columns": [
       {"name": "amount", "type": "double", "kind": "numeric", "nulls": 3,
        "non_finite": 0, "distinct": 48210, "distinct_exact": false, "sample_stride": 16,
        "min": ..., "max": ..., "mean": ..., "std": ...,
        "quantiles": {"p01": ..., "p25": ..., "p50": ..., "p75": ..., "p99": ...},
        "histogram": {"edges": [21 floats], "counts": [20 ints]}},
       {"name": "city", "type": "string", "kind": "categorical", "nulls": 0,
        "distinct": 12, "distinct_exact": true,
        "top": [["Paris", 412], ...], "other": 88},
       {"name": "blob", "type": "binary", "kind": "skipped", "nulls": 0,
        "reason": "binary columns are not profiled"}]}

How each figure is computed, vectorized over whole columns (``pyarrow.compute`` for
nulls, casts and category counts; numpy for numeric reductions, sorting and bin counts):

* ``rows``, ``nulls``, ``min``/``max``, ``mean``/``std`` (population), the histogram and
  the top categories: exact, over every row. NaN and infinities are counted in
  ``non_finite`` and left out of the numeric figures.
* Histogram: ``HISTOGRAM_BINS`` equal-width bins from ``min`` to ``max`` (the last bin
  closed); a constant column has one bin.
* Quantiles (linear interpolation) and ``distinct``: exact when the column has at most
  ``SAMPLE_ROWS`` rows; otherwise over a sample of one row from each block of
  ``sample_stride`` rows (drawn with a fixed seed, so the same table gives the same
  sample, and periodic data cannot alias with the stride), with ``distinct``
  estimated from it by the GEE estimator (``sqrt(N/n) * f1 + (d - f1)``: ``f1`` values
  seen once in the sample, ``d`` distinct values in it; all rows when every sampled
  value is unique), and ``distinct_exact`` false.
* Top categories: the ``TOP_CATEGORIES`` most frequent values (ties by value), with their
  counts; ``other`` counts the remaining non-null rows.

Column kinds: integers, floats and decimals are ``numeric``; dates, times, timestamps and
durations are ``temporal`` (profiled as numbers in their own unit, ``unit`` says which);
strings, dictionaries (categoricals) and booleans are ``categorical``; anything else
(binary, lists, structs, maps, unions, the null type) is ``skipped`` with a ``reason``.
Floats are rounded to 12 significant digits, so the bytes do not depend on the order of a
summation. pyarrow and numpy are imported lazily; imports only ``pipetrail.hashing``.
"""

from __future__ import annotations

import math
from typing import Any

from pipetrail.hashing import canonical_json

__all__ = [
    "HISTOGRAM_BINS",
    "PROFILE_VERSION",
    "QUANTILES",
    "SAMPLE_ROWS",
    "TOP_CATEGORIES",
    "profile_bytes",
    "profile_table",
]

PROFILE_VERSION = 1
HISTOGRAM_BINS = 20
TOP_CATEGORIES = 20
SAMPLE_ROWS = 16_384
QUANTILES = {"p01": 0.01, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p99": 0.99}
_DIGITS = 12
_SAMPLE_SEED = 20_161


def _round(value: Any) -> float | None:
    """A float rounded to ``_DIGITS`` significant digits; None for null or non-finite."""
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number):
        return None
    if number == 0.0:
        return 0.0
    return float(f"{number:.{_DIGITS - 1}e}")


def _kind(pa: Any, kind: Any) -> tuple[str, str | None]:
    """Return ``(kind, reason)``: how a column of this Arrow type is profiled."""
    t = pa.types
    if t.is_integer(kind) or t.is_floating(kind) or t.is_decimal(kind):
        return "numeric", None
    if t.is_temporal(kind):
        return "temporal", None
    if t.is_string(kind) or t.is_large_string(kind) or t.is_boolean(kind):
        return "categorical", None
    if t.is_dictionary(kind):
        return "categorical", None
    if t.is_null(kind):
        return "skipped", "the column has the null type (no values at all)"
    return "skipped", f"{kind} columns are not profiled"


def _sorted_sample(np: Any, values: Any) -> tuple[Any, int]:
    """Return ``(sorted sample, stride)``: one value from each block of ``stride`` rows.

    Which row of a block is drawn at random with a fixed seed: the same table gives the
    same sample, and periodic data (every 4th row alike) cannot alias with the stride.
    """
    stride = max(1, -(-len(values) // SAMPLE_ROWS))
    if stride == 1:
        return np.sort(values), 1
    blocks = len(values) // stride
    picks = np.arange(blocks, dtype=np.int64) * stride
    picks += np.random.default_rng(_SAMPLE_SEED).integers(0, stride, size=blocks)
    return np.sort(values[picks]), stride


def _distinct(np: Any, ordered: Any, total: int, exact: bool) -> int:
    """Distinct values among ``total``, from a sorted sample (all of them when ``exact``)."""
    changes = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1], [True])))
    found = len(changes) - 1
    if exact:
        return int(found)
    once = int((np.diff(changes) == 1).sum())
    if once == found:  # every sampled value unique: GEE would say sqrt(N/n) * n
        return total
    estimate = math.sqrt(total / len(ordered)) * once + (found - once)
    return int(min(total, max(found, round(estimate))))


def _histogram(np: Any, values: Any, low: float, high: float) -> dict[str, Any]:
    """Equal-width bin counts of finite ``values`` (float64, numpy) from low to high."""
    if high <= low:
        return {"edges": [_round(low), _round(high)], "counts": [len(values)]}
    bins = HISTOGRAM_BINS
    width = (high - low) / bins
    # One float temporary, scaled in place; never negative (values >= low), and only the
    # maximum (and values rounded up to it) reach `bins`: the last bin is closed.
    scaled = np.subtract(values, low, dtype=np.float64)
    scaled *= bins / (high - low)
    index = scaled.astype(np.int32)
    np.minimum(index, bins - 1, out=index)
    counts = np.bincount(index, minlength=bins)
    edges = [_round(low + width * i) for i in range(bins)] + [_round(high)]
    return {"edges": edges, "counts": [int(c) for c in counts]}


def _numeric(pa: Any, pc: Any, np: Any, column: Any, entry: dict[str, Any]) -> None:
    """Fill a numeric or temporal column's figures.

    Works on a numpy view of the non-null values (integers as they are, the rest as
    float64): pyarrow's ``min_max`` and ``value_counts`` of floats cost several times
    more than numpy's reductions here.
    """
    kind = column.type
    if pa.types.is_temporal(kind):
        entry["unit"] = str(getattr(kind, "unit", "day" if pa.types.is_date32(kind) else "ms"))
        column = pc.cast(column, pa.int64() if kind.bit_width == 64 else pa.int32())
    array = pc.drop_null(column) if column.null_count else column
    if pa.types.is_integer(array.type):
        values = array.to_numpy(zero_copy_only=False)  # no copy: no nulls left
        non_finite = 0
    else:
        # Not a safe cast: wide decimals lose digits, not the profile.
        array = pc.cast(array, pa.float64(), safe=False)
        values = array.to_numpy(zero_copy_only=False)
        non_finite = 0
        # min and max are NaN or infinite only if some value is: one pass in the usual case.
        if len(values) and not math.isfinite(values.min() + values.max()):
            finite = np.isfinite(values)
            non_finite = len(values) - int(finite.sum())
            values = values[finite]
            array = pa.array(values)
    entry["non_finite"] = non_finite
    if len(values) == 0:
        entry.update(
            min=None,
            max=None,
            mean=None,
            std=None,
            distinct=0,
            distinct_exact=True,
            quantiles=None,
            histogram=None,
        )
        return
    low, high = float(values.min()), float(values.max())
    ordered, stride = _sorted_sample(np, values)
    quantiles = np.quantile(ordered, list(QUANTILES.values()))
    entry.update(
        min=_round(low),
        max=_round(high),
        mean=_round(pc.mean(array).as_py()),
        std=_round(pc.stddev(array, ddof=0).as_py()),
        distinct=_distinct(np, ordered, len(values), exact=stride == 1),
        distinct_exact=stride == 1,
        quantiles={name: _round(q) for name, q in zip(QUANTILES, quantiles, strict=True)},
        histogram=_histogram(np, values, low, high),
    )
    if stride > 1:
        entry["sample_stride"] = stride


def _categorical(pa: Any, pc: Any, column: Any, entry: dict[str, Any]) -> None:
    """Fill a string, dictionary or boolean column's distinct count and top categories."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    found = pc.value_counts(column)  # nulls make one entry: dropped below, no copy first
    values = found.field("values")
    counts = found.field("counts")
    if column.null_count:
        valid = pc.is_valid(values)
        values, counts = values.filter(valid), counts.filter(valid)
    # Most frequent first, ties by value, so equal tables give equal lists.
    order = pc.sort_indices(
        pa.table({"c": counts, "v": values}),
        sort_keys=[("c", "descending"), ("v", "ascending")],
    )
    top = order[:TOP_CATEGORIES]
    top_values = values.take(top).to_pylist()
    top_counts = counts.take(top).to_pylist()
    valid = len(column) - column.null_count
    entry.update(
        distinct=len(values),
        distinct_exact=True,
        top=[[_category(v), int(c)] for v, c in zip(top_values, top_counts, strict=True)],
        other=valid - sum(int(c) for c in top_counts),
    )


def _category(value: Any) -> str | bool:
    return value if isinstance(value, bool | str) else str(value)


def profile_table(table: Any) -> dict[str, Any]:
    """Return the profile of a ``pyarrow.Table`` or ``RecordBatch`` (see the module docstring).

    Never raises for a column it cannot profile: the column is ``skipped`` with a reason.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rows = table.num_rows
    columns: list[dict[str, Any]] = []
    for field, column in zip(table.schema, table.columns, strict=True):
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        kind, reason = _kind(pa, field.type)
        entry: dict[str, Any] = {
            "name": field.name,
            "type": str(field.type),
            "kind": kind,
            "nulls": column.null_count,
        }
        if field.metadata and b"pipetrail.dictionary" in field.metadata:
            entry["type"] = f"dictionary<{field.type}>"
        try:
            if kind in ("numeric", "temporal"):
                _numeric(pa, pc, np, column, entry)
            elif kind == "categorical":
                _categorical(pa, pc, column, entry)
        except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
            entry = {
                "name": field.name,
                "type": entry["type"],
                "kind": "skipped",
                "nulls": column.null_count,
                "reason": f"could not be profiled: {type(exc).__name__}: {exc}",
            }
        if reason is not None:
            entry["reason"] = reason
        columns.append(entry)
    return {"schema_version": PROFILE_VERSION, "rows": rows, "columns": columns}


def profile_bytes(profile: dict[str, Any]) -> bytes:
    """Return a profile's stored form: its canonical JSON text, UTF-8."""
    return canonical_json(profile).encode("utf-8")
