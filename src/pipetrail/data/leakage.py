"""The leakage check: do two subsets share rows (by key or content) or groups?

Owns :func:`check_leakage`, :func:`assert_no_leakage`, the :class:`Leakage` result, the
pairwise overlap counts :func:`~pipetrail.data.split` records, and the wording of the
error. Rows are compared by their 64-bit identities (see
:mod:`pipetrail.data.row_identity`): by the key columns when ``key`` is given, else by
the values of every column. Counts are of *distinct* shared identities: a row present
twice in ``a`` and once in ``b`` counts once. Must not import pandas, polars, the ledger
or the execution layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.data.frames import Frame, column_spec
from pipetrail.data.row_identity import row_identities
from pipetrail.errors import DefinitionError, LeakageError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "Leakage",
    "assert_no_leakage",
    "check_leakage",
    "identities_of",
    "leakage_message",
    "pairwise_overlaps",
]


@dataclass(frozen=True)
class Leakage:
    """What two tables share.

    Attributes:
        rows: distinct rows (by ``key``, or by all columns) found in both tables.
        groups: distinct groups found in both, or None when no group column was given.
        key: the key columns compared, or ``()`` for whole rows.
        group: the group columns compared, or ``()``.
    """

    rows: int
    groups: int | None
    key: tuple[str, ...] = ()
    group: tuple[str, ...] = ()

    @property
    def leaked(self) -> bool:
        """Whether the tables share any row or group."""
        return self.rows > 0 or bool(self.groups)

    def __bool__(self) -> bool:
        return self.leaked

    def to_record(self) -> dict[str, Any]:
        """Return the result as plain data (what the ledger records)."""
        return {
            "rows": self.rows,
            "groups": self.groups,
            "key": list(self.key),
            "group": list(self.group),
        }


def identities_of(frame: Frame, columns: Sequence[str]) -> Any:
    """Return one ``uint64`` identity per row of ``frame`` from ``columns`` (all if empty)."""
    return row_identities(frame.arrow_columns(columns), frame.rows)


def _shared(left: Any, right: Any) -> int:
    import numpy as np

    return int(np.intersect1d(left, right).size)


def pairwise_overlaps(identities: Any, labels: Any, count: int, order: Any = None) -> Any:
    """Return a ``count x count`` matrix of distinct identities shared by two subsets.

    Args:
        identities: ``uint64`` identity of each row (or any bijection of it, such as the
            seeded scores).
        labels: the subset index of each row (``-1`` for rows in no subset).
        count: the number of subsets.
        order: positions that put equal identities next to each other, when the caller
            already has them (saves a sort).
    """
    import numpy as np

    matrix = np.zeros((count, count), dtype=np.int64)
    if count < 2 or not len(identities):
        return matrix
    if order is None:
        order = np.argsort(identities, kind="stable")
    ids = identities[order]
    subset = labels[order]
    keep = subset >= 0
    ids, subset = ids[keep], subset[keep]
    if not len(ids):
        return matrix
    starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
    # One bit per subset: the subsets each distinct identity occurs in.
    bits = np.left_shift(np.ones(len(subset), dtype=np.uint64), subset.astype(np.uint64))
    masks = np.bitwise_or.reduceat(bits, starts)
    several = masks[(masks & (masks - np.uint64(1))) != 0]
    for a in range(count):
        in_a = (several >> np.uint64(a)) & np.uint64(1)
        for b in range(a + 1, count):
            shared = int(np.count_nonzero(in_a & ((several >> np.uint64(b)) & np.uint64(1))))
            matrix[a, b] = matrix[b, a] = shared
    return matrix


def leakage_message(
    what: str, overlaps: Sequence[dict[str, Any]], key: Sequence[str], group: Sequence[str]
) -> str:
    """Return the error text for shared rows or groups between named subsets."""
    by = f"key {list(key)!r}" if key else "row content (all columns)"
    parts = []
    for item in overlaps:
        a, b = item["subsets"]
        bits = []
        if item["rows"]:
            bits.append(f"{item['rows']} row{'s' if item['rows'] != 1 else ''}")
        if item.get("groups"):
            bits.append(f"{item['groups']} group{'s' if item['groups'] != 1 else ''}")
        parts.append(f"{a!r} and {b!r} share {' and '.join(bits)}")
    fixes = ["drop duplicate rows first (df.drop_duplicates())"]
    if not group:
        fixes.append("pass group='column' to keep related rows in one subset")
    if not key:
        fixes.append("pass key='id' to compare rows by id columns instead of content")
    fixes.append("or pass leakage='warn' or leakage='off' to accept the overlap")
    return f"{what}: {'; '.join(parts)} (compared by {by}). To fix: {', '.join(fixes)}."


def _frame(value: Any, caller: str) -> Frame:
    return value if isinstance(value, Frame) else Frame(value, caller)


def check_leakage(
    a: Any,
    b: Any,
    *,
    key: str | Sequence[str] | None = None,
    group: str | Sequence[str] | None = None,
) -> Leakage:
    """Count the rows (and groups) two tables share.

    Args:
        a: a pandas or polars DataFrame or a pyarrow Table.
        b: another one (of any of those libraries), with the compared columns.
        key: column(s) identifying a row; by default rows are compared by the values of
            every column of ``a`` (``b`` must have the same columns).
        group: column(s) naming a group (a patient, a user); shared groups are counted too.

    Returns:
        The :class:`Leakage`; it is true when anything is shared.

    Raises:
        DefinitionError: a table is not supported or lacks a compared column.

    Example:
        >>> result = check_leakage(train, test, key="patient_id")
        >>> result.rows
        0
    """
    left, right = _frame(a, "check_leakage"), _frame(b, "check_leakage")
    keys = column_spec(key, "key")
    groups = column_spec(group, "group")
    columns = keys or tuple(left.columns)
    if not keys and set(left.columns) != set(right.columns):
        raise DefinitionError(
            f"check_leakage() compares whole rows, but the tables have different columns "
            f"({sorted(set(left.columns) ^ set(right.columns))!r} in only one); pass key=... "
            "to compare by id columns"
        )
    left.check_columns(columns, "key")
    right.check_columns(columns, "key")
    rows = _shared(identities_of(left, columns), identities_of(right, columns))
    shared_groups = None
    if groups:
        left.check_columns(groups, "group")
        right.check_columns(groups, "group")
        shared_groups = _shared(identities_of(left, groups), identities_of(right, groups))
    return Leakage(rows=rows, groups=shared_groups, key=keys, group=groups)


def assert_no_leakage(
    a: Any,
    b: Any,
    *,
    key: str | Sequence[str] | None = None,
    group: str | Sequence[str] | None = None,
) -> Leakage:
    """Like :func:`check_leakage`, but raise when the tables share anything.

    Returns:
        The :class:`Leakage` (nothing shared).

    Raises:
        LeakageError: the tables share rows or groups (the message says how many).
        DefinitionError: as :func:`check_leakage`.
    """
    result = check_leakage(a, b, key=key, group=group)
    if result.leaked:
        overlap = {"subsets": ["a", "b"], "rows": result.rows, "groups": result.groups}
        raise LeakageError(
            leakage_message("the tables overlap", [overlap], result.key, result.group),
            overlaps=(overlap,),
        )
    return result
