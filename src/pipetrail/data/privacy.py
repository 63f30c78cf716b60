"""Privacy operations on pandas tables, each recorded in the running step's event.

``pseudonymize`` (keyed hashing), ``drop``, ``generalize`` (bins or levels),
``aggregate`` (with small groups suppressed) and ``check_k_anonymity``. Called inside a
step, each appends to the step event's ``data_ops`` a record of what it did, in the
shape :mod:`pipetrail.data.ops` uses: ``op``, ``args`` (never a key or a value of the
data), what it changed (``columns``, ``groups_suppressed``, ``rows_suppressed``, ``k``...),
``input`` and ``outputs`` (digest and rows). Outside a step nothing is recorded.

Pseudonyms are keyed BLAKE3 digests of a value's text, truncated to 128 bits and shown
as hex: the same value and key give the same pseudonym (joins still work), and without
the key a pseudonym cannot be confirmed from a guessed value. The record names the key
by its id only (:func:`pipetrail.store.key_providers.key_id`), never the key.

Imports pandas only when a table is given.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.data.frames import Frame, column_spec
from pipetrail.errors import DefinitionError
from pipetrail.execution.metrics import current_recorder
from pipetrail.store.key_providers import key_id

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "KAnonymity",
    "aggregate",
    "check_k_anonymity",
    "drop",
    "generalize",
    "pseudonymize",
]

PSEUDONYM_ALGORITHM = "blake3-keyed-128"


def _pandas_frame(df: Any, caller: str) -> Frame:
    frame = Frame(df, caller)
    if frame.library != "pandas":
        raise DefinitionError(
            f"{caller}() works on pandas DataFrames, got a {frame.library} table; convert "
            "it with .to_pandas() first"
        )
    return frame


def _columns(frame: Frame, columns: Any, what: str) -> tuple[str, ...]:
    names = column_spec(columns, what)
    if not names:
        raise DefinitionError(f"{frame.caller}() needs {what}=... naming at least one column")
    frame.check_columns(names, what)
    return names


def _record(frame: Frame, record: dict[str, Any], result: Any) -> None:
    recorder = current_recorder()
    if recorder is None:
        return
    record["input"] = {"digest": frame.digest(), "rows": frame.rows}
    record["outputs"] = {
        record["op"]: {"digest": frame.digest(result), "rows": Frame(result, frame.caller).rows}
    }
    recorder.add_data_op(record)


def pseudonymize(df: Any, columns: str | Sequence[str], *, key: bytes) -> Any:
    """Replace the values of ``columns`` by keyed pseudonyms (nulls stay null).

    Args:
        df: a pandas DataFrame (not modified).
        columns: the column(s) to pseudonymize.
        key: the secret key, at least 16 bytes (for example from the project's key
            provider); only its id is recorded.

    Returns:
        A copy with those columns as 32-character hex strings.

    Raises:
        DefinitionError: not a pandas DataFrame, an unknown column, or a short key.
    """
    import blake3

    frame = _pandas_frame(df, "pseudonymize")
    names = _columns(frame, columns, "columns")
    if not isinstance(key, bytes | bytearray) or len(key) < 16:
        raise DefinitionError("pseudonymize() needs key=... of at least 16 bytes")
    secret = bytes(blake3.blake3(bytes(key)).digest())  # any length in, 32 bytes out

    def pseudonym(value: Any) -> Any:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return blake3.blake3(str(value).encode("utf-8"), key=secret).hexdigest(length=16)

    result = df.copy()
    for name in names:
        result[name] = _nulls_as_none(df[name].map(pseudonym, na_action="ignore"))
    _record(
        frame,
        {
            "op": "pseudonymize",
            "args": {"columns": list(names)},
            "columns": list(names),
            "algorithm": PSEUDONYM_ALGORITHM,
            "key_id": key_id("pseudonym", bytes(key)),
        },
        result,
    )
    return result


def drop(df: Any, columns: str | Sequence[str]) -> Any:
    """Return ``df`` without ``columns``, recording which were dropped.

    Raises:
        DefinitionError: not a pandas DataFrame, or an unknown column.
    """
    frame = _pandas_frame(df, "drop")
    names = _columns(frame, columns, "columns")
    result = df.drop(columns=list(names))
    _record(frame, {"op": "drop", "args": {"columns": list(names)}, "columns": list(names)}, result)
    return result


def generalize(
    df: Any,
    column: str,
    *,
    bins: Sequence[float] | None = None,
    levels: Mapping[Any, Any] | None = None,
) -> Any:
    """Coarsen one column: numbers into ``bins`` (edges), or values into ``levels``.

    With ``bins=[0, 18, 65, 120]`` a value becomes the text of its interval,
    ``"[18, 65)"``; values outside every bin become null. With ``levels={"Paris":
    "FR", ...}`` each value becomes its level; a value with no level becomes null.

    Raises:
        DefinitionError: not a pandas DataFrame, an unknown column, both or neither of
            ``bins`` and ``levels``, or bins that are not increasing numbers.
    """
    frame = _pandas_frame(df, "generalize")
    (name,) = _columns(frame, column, "column")
    if (bins is None) == (levels is None):
        raise DefinitionError("generalize() needs exactly one of bins=[...] or levels={...}")
    result = df.copy()
    original = df[name]
    if bins is not None:
        edges = [float(b) for b in bins]
        if len(edges) < 2 or any(b >= a for a, b in zip(edges[1:], edges, strict=False)):
            raise DefinitionError(
                f"generalize(): bins must be at least two increasing numbers, got {list(bins)!r}"
            )

        def label(value: Any) -> Any:
            try:
                x = float(value)
            except (TypeError, ValueError):
                return None
            for lo, hi in itertools.pairwise(edges):
                if lo <= x < hi:
                    return f"[{_num(lo)}, {_num(hi)})"
            return None

        result[name] = _nulls_as_none(original.map(label))
        args: dict[str, Any] = {"column": name, "bins": edges}
    else:
        mapping = dict(levels or {})
        result[name] = _nulls_as_none(original.map(lambda v: mapping.get(v)))
        args = {"column": name, "levels": len(mapping)}
    unmatched = int(result[name].isna().sum() - original.isna().sum())
    _record(
        frame,
        {"op": "generalize", "args": args, "columns": [name], "values_nulled": unmatched},
        result,
    )
    return result


def _nulls_as_none(series: Any) -> Any:
    """The series as objects, with every missing value as None (not NaN)."""
    values = series.astype("object")
    return values.where(values.notna(), None)


def _num(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def aggregate(
    df: Any,
    *,
    by: str | Sequence[str],
    aggs: Mapping[str, str],
    min_group_size: int = 1,
) -> Any:
    """Group by ``by``, aggregate, and suppress groups smaller than ``min_group_size``.

    Args:
        df: a pandas DataFrame.
        by: the grouping column(s).
        aggs: output column -> ``"column:function"`` (``sum``, ``mean``, ``count``,
            ``min``, ``max``, ``median``, ``std``, ``nunique``).
        min_group_size: groups with fewer rows are left out of the result (k).

    Returns:
        One row per kept group, with the ``by`` columns, ``n`` (the group's rows) and the
        aggregates.

    Raises:
        DefinitionError: not a pandas DataFrame, unknown columns or functions, or
            ``min_group_size`` below 1.
    """
    frame = _pandas_frame(df, "aggregate")
    keys = _columns(frame, by, "by")
    if isinstance(min_group_size, bool) or not isinstance(min_group_size, int):
        raise DefinitionError("aggregate(): min_group_size must be a whole number >= 1")
    if min_group_size < 1:
        raise DefinitionError("aggregate(): min_group_size must be a whole number >= 1")
    allowed = {"sum", "mean", "count", "min", "max", "median", "std", "nunique"}
    spec: dict[str, tuple[str, str]] = {}
    for out, text in aggs.items():
        column, _, function = str(text).partition(":")
        if function not in allowed:
            raise DefinitionError(
                f"aggregate(): {out}={text!r} should be 'column:function' with a function "
                f"among {', '.join(sorted(allowed))}"
            )
        frame.check_columns((column,), "aggs")
        spec[out] = (column, function)
    grouped = df.groupby(list(keys), dropna=False, sort=True)
    table = grouped.agg(n=(keys[0], "size"), **spec).reset_index()
    small = table["n"] < min_group_size
    result = table[~small].reset_index(drop=True)
    _record(
        frame,
        {
            "op": "aggregate",
            "args": {
                "by": list(keys),
                "aggs": {k: f"{c}:{f}" for k, (c, f) in spec.items()},
                "min_group_size": min_group_size,
            },
            "groups": len(table),
            "groups_suppressed": int(small.sum()),
            "rows_suppressed": int(table.loc[small, "n"].sum()),
        },
        result,
    )
    return result


@dataclass(frozen=True)
class KAnonymity:
    """How anonymous a table is over its quasi-identifiers.

    Attributes:
        k: the smallest group size (the k the table achieves; 0 for an empty table).
        required: the k that was asked for.
        groups: how many distinct quasi-identifier combinations there are.
        violating: the combinations smaller than ``required`` (at most 20 listed).
        violating_rows: the rows in those groups.
    """

    k: int
    required: int
    groups: int
    violating_rows: int
    violating: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every group has at least ``required`` rows."""
        return self.k >= self.required


def check_k_anonymity(df: Any, quasi_identifiers: str | Sequence[str], k: int) -> KAnonymity:
    """Measure the k-anonymity of ``df`` over ``quasi_identifiers`` (and record it).

    Raises:
        DefinitionError: not a pandas DataFrame, unknown columns, or ``k`` below 1.
    """
    frame = _pandas_frame(df, "check_k_anonymity")
    keys = _columns(frame, quasi_identifiers, "quasi_identifiers")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise DefinitionError("check_k_anonymity(): k must be a whole number >= 1")
    sizes = df.groupby(list(keys), dropna=False, sort=True).size()
    small = sizes[sizes < k]
    violating = [
        dict(zip(keys, index if isinstance(index, tuple) else (index,), strict=True))
        for index in list(small.index)[:20]
    ]
    result = KAnonymity(
        k=int(sizes.min()) if len(sizes) else 0,
        required=k,
        groups=len(sizes),
        violating_rows=int(small.sum()),
        violating=[{c: _plain(v) for c, v in row.items()} for row in violating],
    )
    recorder = current_recorder()
    if recorder is not None:
        recorder.add_data_op(
            {
                "op": "check_k_anonymity",
                "args": {"quasi_identifiers": list(keys), "k": k},
                "k": result.k,
                "groups": result.groups,
                "violating_groups": len(small),
                "violating_rows": result.violating_rows,
                "ok": result.ok,
                "input": {"digest": frame.digest(), "rows": frame.rows},
                "outputs": {},
            }
        )
    return result


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value
