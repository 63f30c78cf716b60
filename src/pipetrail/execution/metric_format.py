"""The byte format of stored metric series and their timestamps (see :mod:`.metrics`).

A series is an NPY 1.0 file of a one-dimensional structured array of dtype
:data:`SERIES_DTYPE`, one record per point in logging order; a step run's timestamps are
an NPY 1.0 array of ``'<i8'`` holding each series' timestamps one series after another
(ADR 0033). Both are written with the standard library alone and read without numpy.
"""

from __future__ import annotations

import ast
import functools
import struct
import sys
from array import array
from typing import TYPE_CHECKING, Any

from pipetrail.errors import SerializationError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "METRIC_OUTPUT_PREFIX",
    "REPORT_OUTPUT_PREFIX",
    "SERIES_DTYPE",
    "decode_series",
    "encode_series",
    "encode_timestamps",
    "series_timestamps",
]

SERIES_DTYPE = "[('step', '<i8'), ('value', '<f8')]"
# Metric series and reports are also listed among a step run's outputs under these
# prefixes (see runner.py): lineage edges and cache hits then cover them like any output.
# Here rather than in .metrics, so that reading a run's outputs does not load the recorder.
METRIC_OUTPUT_PREFIX = "metric:"
REPORT_OUTPUT_PREFIX = "report:"

_NPY_MAGIC = b"\x93NUMPY\x01\x00"
# One record of a series (a step index and a value, little-endian), and up to how many
# points a series is encoded record by record (see encode_series).
_RECORD = struct.Struct("<qd").pack
_PACKED_MAX = 32
_TIMESTAMPS_DTYPE = "'<i8'"


@functools.lru_cache(maxsize=256)
def _npy_header(descr: str, count: int) -> bytes:
    """Return an NPY 1.0 header for a 1-d array (padded as numpy pads it, to 64 bytes)."""
    text = f"{{'descr': {descr}, 'fortran_order': False, 'shape': ({count},), }}"
    unpadded = len(_NPY_MAGIC) + 2 + len(text) + 1
    text += " " * (-unpadded % 64) + "\n"
    return _NPY_MAGIC + len(text).to_bytes(2, "little") + text.encode("latin-1")


def _little_endian(values: array[Any]) -> bytes:
    if sys.byteorder == "little":
        return values.tobytes()
    swapped = array(values.typecode, values)
    swapped.byteswap()
    return swapped.tobytes()


def encode_series(steps: array[int], values: array[float]) -> bytes:
    """Return the stored bytes of a series (see the module docstring).

    Args:
        steps: the step indexes (typecode ``q``).
        values: the values (typecode ``d``), as many as ``steps``.
    """
    count = len(values)
    if count <= _PACKED_MAX:
        # A few points (most series log one per step): packed one record at a time, the
        # same little-endian bytes as the interleaved arrays below, without making them.
        return _npy_header(SERIES_DTYPE, count) + b"".join(map(_RECORD, steps, values))
    records = array("q", bytes(16 * count))
    records[0::2] = steps
    records[1::2] = array("q", values.tobytes())  # the float64 bits, moved as int64 words
    return _npy_header(SERIES_DTYPE, count) + _little_endian(records)


def encode_timestamps(parts: list[array[int]]) -> bytes:
    """Return the stored bytes of a step run's timestamps: every series' own, in order.

    Args:
        parts: each series' timestamps (typecode ``q``), in the order their references
            give as ``timestamps_at``.
    """
    joined = array("q")
    for part in parts:
        joined.extend(part)
    return _npy_header(_TIMESTAMPS_DTYPE, len(joined)) + _little_endian(joined)


def series_timestamps(reference: Mapping[str, Any], data: bytes) -> array[int]:
    """Return one series' timestamps from its step's timestamps object (no numpy needed).

    Args:
        reference: the series' reference in a step event (``count``, and
            ``timestamps_at`` when the object holds the step run's every series).
        data: the bytes of the object its ``timestamps`` names.

    Returns:
        The nanoseconds since the step function was called, one per point.

    Raises:
        SerializationError: the bytes are not a timestamps array, or hold fewer points
            than the reference says.
    """
    try:
        if not data.startswith(_NPY_MAGIC):
            raise ValueError("no NPY 1.0 magic")
        size = int.from_bytes(data[8:10], "little")
        header = ast.literal_eval(data[10 : 10 + size].decode("latin-1"))
        if str(header["descr"]) != "<i8" or header["fortran_order"]:
            raise ValueError(f"dtype {header['descr']!r}")
        (total,) = header["shape"]
        body = data[10 + size :]
        if len(body) != 8 * total:
            raise ValueError(f"{len(body)} bytes for {total} timestamps")
        at = int(reference.get("timestamps_at", 0))
        count = int(reference["count"])
        if at < 0 or at + count > total:
            raise ValueError(f"points {at} to {at + count} of {total}")
    except (ValueError, KeyError, TypeError, SyntaxError, UnicodeDecodeError) as exc:
        raise SerializationError(
            f"these bytes are not the timestamps of this metric series ({exc}); timestamps "
            "are NPY 1.0 arrays of dtype '<i8'"
        ) from None
    stamps = array("q", body[8 * at : 8 * (at + count)])
    if sys.byteorder != "little":
        stamps.byteswap()
    return stamps


def decode_series(data: bytes) -> tuple[array[int], array[float]]:
    """Read the bytes written by :func:`encode_series` (no numpy needed).

    Returns:
        ``(steps, values)`` as ``array('q')`` and ``array('d')``.

    Raises:
        SerializationError: the bytes are not a metric series.
    """
    try:
        if not data.startswith(_NPY_MAGIC):
            raise ValueError("no NPY 1.0 magic")
        size = int.from_bytes(data[8:10], "little")
        header = ast.literal_eval(data[10 : 10 + size].decode("latin-1"))
        if str(header["descr"]) != SERIES_DTYPE or header["fortran_order"]:
            raise ValueError(f"dtype {header['descr']!r}")
        (count,) = header["shape"]
        body = data[10 + size :]
        if len(body) != 16 * count:
            raise ValueError(f"{len(body)} bytes of records for {count} points")
    except (ValueError, KeyError, TypeError, SyntaxError, UnicodeDecodeError) as exc:
        raise SerializationError(
            f"these bytes are not a pipetrail metric series ({exc}); series are NPY 1.0 "
            f"arrays of dtype {SERIES_DTYPE}"
        ) from None
    records = array("q", body)
    if sys.byteorder != "little":
        records.byteswap()
    return records[0::2], array("d", records[1::2].tobytes())
