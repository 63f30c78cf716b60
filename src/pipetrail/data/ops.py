"""``sample`` and ``split``: seeded, machine-independent row selection, recorded in steps.

Owns the two operations and the record each one leaves in the running step's event
(``data_ops``, see :func:`_record`). Which rows are chosen depends only on the rows'
values (or key columns), their positions and the seed, through
:mod:`pipetrail.data.row_identity` and the counting rules of
:mod:`pipetrail.data.allocate`; no random number generator is involved, so the result
does not change with the NumPy version, the platform or the number of threads.

Rows keep their input order unless ``shuffle=True``, which returns them in seeded order.

**Seeds.** ``seed=None`` inside a running step uses the step's derived seed (the one
recorded on the step run); outside a step a seed is required. Seeds are validated like
run seeds (``0 .. 2**32 - 1``).

**Records.** Called inside a step, each operation appends to the step event's
``data_ops`` a dict with ``op``, ``args``, ``seed``, ``seed_from`` (``"argument"`` or
``"step"``), ``algorithm``, ``input`` (``digest``, ``rows``), ``outputs`` (subset name ->
``digest``, ``rows``) and, for splits, ``leakage`` (the mode, what rows were compared
by, the overlap counts of every pair of subsets and the outcome). Digests are those the
content store gives the same tables returned as step outputs. Outside a step nothing is
recorded and no digest is computed.

Must not import pandas, polars or the ledger; imports the execution layer's recorder.
"""

from __future__ import annotations

import operator
import warnings
from typing import TYPE_CHECKING, Any

from pipetrail.capture.seeds import validate_seed
from pipetrail.data.allocate import (
    exact_fraction,
    group_assignment,
    largest_remainder,
    parse_fractions,
    stratified_counts,
)
from pipetrail.data.frames import Frame, column_spec
from pipetrail.data.leakage import identities_of, leakage_message, pairwise_overlaps
from pipetrail.data.row_identity import SCORE_VERSION, scores
from pipetrail.errors import DefinitionError, LeakageError, LeakageWarning, ParamError
from pipetrail.execution.metrics import current_recorder

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from pipetrail.execution.metrics import StepRecorder

__all__ = ["LEAKAGE_MODES", "MAX_SUBSETS", "sample", "split"]

LEAKAGE_MODES = ("error", "warn", "off")
MAX_SUBSETS = 63  # one bit per subset in the overlap masks


def _seed(seed: Any, caller: str, recorder: StepRecorder | None) -> tuple[int, str]:
    if seed is not None:
        try:
            return validate_seed(seed), "argument"
        except ParamError as exc:
            raise ParamError(f"{caller}(): {exc}") from None
    if recorder is not None and recorder.seed is not None:
        return recorder.seed, "step"
    raise DefinitionError(
        f"{caller}() needs seed=... outside a running step (inside one it defaults to the "
        "step's derived seed); pass a whole number from 0 to 4294967295"
    )


def _non_empty(frame: Frame, caller: str) -> int:
    rows = frame.rows
    if rows == 0:
        raise DefinitionError(
            f"{caller}() was given a table with no rows; check the step that produced it"
        )
    return rows


def _ordered(positions: Any, score: Any, shuffle: bool) -> Any:
    """Return ``positions`` in input order, or in seeded order when ``shuffle``."""
    import numpy as np

    if shuffle:
        return positions[np.argsort(score[positions], kind="stable")]
    return np.sort(positions)


def _record(
    recorder: StepRecorder | None,
    frame: Frame,
    record: dict[str, Any],
    subsets: Mapping[str, Any],
) -> None:
    if recorder is None:
        return
    record["input"] = {"digest": frame.digest(), "rows": frame.rows}
    record["outputs"] = {
        name: {"digest": frame.digest(value), "rows": Frame(value, frame.caller).rows}
        for name, value in subsets.items()
    }
    recorder.add_data_op(record)


def sample(
    df: Any,
    n: int | None = None,
    *,
    frac: float | None = None,
    seed: int | None = None,
    key: str | Sequence[str] | None = None,
    shuffle: bool = False,
) -> Any:
    """Return a seeded sample of rows, the same on every machine.

    The rows with the lowest seeded scores are taken (see :mod:`pipetrail.data`). Growing
    ``n`` with the same seed only adds rows: a smaller sample is part of a larger one.

    Args:
        df: a pandas or polars DataFrame or a pyarrow Table.
        n: how many rows (0 to the number of rows); give ``n`` or ``frac``.
        frac: which fraction of the rows, in ``[0, 1]``; the count is rounded half up
            (the largest-remainder rule for two parts).
        seed: ``0 .. 2**32 - 1``; inside a step, None uses the step's derived seed.
        key: column(s) identifying a row, hashed instead of every column (faster, and
            the choice then ignores the other columns).
        shuffle: return the rows in seeded order instead of their input order.

    Returns:
        A table of the same type (pandas rows keep their index labels).

    Raises:
        DefinitionError: not a supported table, an empty table, both or neither of
            ``n`` and ``frac``, ``n`` larger than the table, an unknown column, or no seed
            outside a step.
        ParamError: the seed is out of range.

    Example:
        >>> small = sample(df, n=1000, seed=7)
    """
    frame = Frame(df, "sample")
    recorder = current_recorder()
    chosen_seed, seed_from = _seed(seed, "sample", recorder)
    rows = _non_empty(frame, "sample")
    keys = column_spec(key, "key")
    frame.check_columns(keys, "key")
    if (n is None) == (frac is None):
        raise DefinitionError("sample() needs exactly one of n=... (a row count) or frac=...")
    if n is not None:
        if isinstance(n, bool):
            raise DefinitionError(f"sample(): n must be a whole number, got {n!r}")
        try:
            count = operator.index(n)
        except TypeError:
            raise DefinitionError(f"sample(): n must be a whole number, got {n!r}") from None
        if not 0 <= count <= rows:
            raise DefinitionError(
                f"sample(): n={count} but the table has {rows} rows; ask for 0 to {rows} rows "
                "(or use frac=...)"
            )
    else:
        share = exact_fraction(frac, "sample(): frac")
        count = largest_remainder(rows, [share, 1 - share])[0]

    import numpy as np

    score = scores(identities_of(frame, keys), "sample", chosen_seed)
    order = np.argsort(score, kind="stable")
    positions = _ordered(order[:count].astype(np.int64), score, shuffle)
    result = frame.take(positions)
    args: dict[str, Any] = {"key": list(keys), "shuffle": shuffle}
    args.update({"n": count} if frac is None else {"frac": float(frac), "n": count})
    _record(
        recorder,
        frame,
        {
            "op": "sample",
            "args": args,
            "seed": chosen_seed,
            "seed_from": seed_from,
            "algorithm": SCORE_VERSION,
        },
        {"sample": result},
    )
    return result


def _labels_plain(score: Any, totals: Sequence[int]) -> tuple[Any, Any]:
    """Return each row's subset (rows in seeded order fill the subsets) and that order."""
    import numpy as np

    order = np.argsort(score, kind="stable")
    labels = np.empty(len(score), dtype=np.int64)
    labels[order] = np.repeat(np.arange(len(totals), dtype=np.int64), totals)
    return labels, order


def _labels_stratified(
    frame: Frame, strata: Sequence[str], score: Any, totals: Sequence[int], seed: int
) -> tuple[Any, Any]:
    """Return each row's subset, strata apportioned apart, and the order (stratum, score)."""
    import numpy as np

    stratum_ids = identities_of(frame, strata)
    unique, codes, sizes = np.unique(stratum_ids, return_inverse=True, return_counts=True)
    stratum_score = scores(unique, "split.strata", seed)
    serve = np.lexsort((stratum_score, -sizes))  # largest first, equal sizes in seeded order
    counts = stratified_counts(sizes.tolist(), serve.tolist(), totals)
    order = np.lexsort((score, codes))  # by stratum, then seeded order within it
    per_cell = np.asarray(counts, dtype=np.int64).reshape(len(unique), len(totals))
    cell_labels = np.tile(np.arange(len(totals), dtype=np.int64), len(unique))
    labels = np.empty(len(score), dtype=np.int64)
    labels[order] = np.repeat(cell_labels, per_cell.ravel())
    return labels, order


def _labels_grouped(frame: Frame, groups: Sequence[str], totals: Sequence[int], seed: int) -> Any:
    """Subset index of each row, whole groups at a time (see :mod:`.allocate`)."""
    import numpy as np

    group_ids = identities_of(frame, groups)
    unique, codes, sizes = np.unique(group_ids, return_inverse=True, return_counts=True)
    order = np.argsort(scores(unique, "split.groups", seed), kind="stable")
    assigned = np.empty(len(unique), dtype=np.int64)
    assigned[order] = group_assignment(sizes[order].astype(np.int64), totals)
    return assigned[codes]


def split(
    df: Any,
    fractions: Mapping[str, float],
    *,
    seed: int | None = None,
    stratify: str | Sequence[str] | None = None,
    group: str | Sequence[str] | None = None,
    key: str | Sequence[str] | None = None,
    leakage: str = "error",
    shuffle: bool = False,
) -> dict[str, Any]:
    """Split rows into named subsets, the same on every machine for the same seed.

    Rows are ordered by their seeded scores and the subsets take them in turn, in the
    order of ``fractions``; counts follow the largest-remainder rule. With ``stratify``,
    every class is apportioned on its own; with ``group``, all rows of a group land in
    one subset. Then the leakage check compares the subsets.

    Args:
        df: a pandas or polars DataFrame or a pyarrow Table.
        fractions: subset name -> fraction; the fractions must sum to 1.
        seed: ``0 .. 2**32 - 1``; inside a step, None uses the step's derived seed.
        stratify: column(s) whose classes keep their proportions in every subset.
        group: column(s) naming groups that must not be divided (cannot be combined
            with ``stratify``).
        key: column(s) identifying a row: used for the seeded order and by the leakage
            check instead of the values of every column.
        leakage: ``"error"`` (default) refuses subsets that share rows or groups,
            ``"warn"`` warns (:class:`~pipetrail.errors.LeakageWarning`), ``"off"`` skips
            the check.
        shuffle: return each subset's rows in seeded order instead of input order.

    Returns:
        ``{name: table}`` in the order of ``fractions``, each of the input's type.

    Raises:
        LeakageError: two subsets share rows or groups and ``leakage="error"``; the
            message names the subsets, the counts and the fixes.
        DefinitionError: fractions that do not sum to 1, an unknown column, an empty
            table, ``stratify`` with ``group``, or no seed outside a step.
        ParamError: the seed is out of range.

    Example:
        >>> parts = split(df, {"train": 0.8, "test": 0.2}, seed=7, stratify="y")
        >>> train, test = parts["train"], parts["test"]
    """
    import numpy as np

    frame = Frame(df, "split")
    recorder = current_recorder()
    chosen_seed, seed_from = _seed(seed, "split", recorder)
    names, shares = parse_fractions(fractions)
    if len(names) > MAX_SUBSETS:
        raise DefinitionError(f"split() makes at most {MAX_SUBSETS} subsets, got {len(names)}")
    if leakage not in LEAKAGE_MODES:
        raise DefinitionError(
            f"split(): leakage={leakage!r} is not one of {', '.join(map(repr, LEAKAGE_MODES))}"
        )
    strata = column_spec(stratify, "stratify")
    groups = column_spec(group, "group")
    keys = column_spec(key, "key")
    for columns, what in ((strata, "stratify"), (groups, "group"), (keys, "key")):
        frame.check_columns(columns, what)
    if strata and groups:
        raise DefinitionError(
            "split() cannot combine stratify= and group=: whole groups cannot also keep "
            "every class's proportion; stratify on a group-level column of one row per "
            "group, then select the rows of each subset's groups"
        )
    rows = _non_empty(frame, "split")
    totals = largest_remainder(rows, shares)
    score = scores(identities_of(frame, keys), "split", chosen_seed)
    # ``order`` puts equal scores (equal identities) side by side, which the leakage
    # check needs: by score alone, or by stratum then score when every column is hashed
    # (equal rows are then in one stratum).
    order = None
    if groups:
        labels = _labels_grouped(frame, groups, totals, chosen_seed)
    elif strata:
        labels, by_stratum = _labels_stratified(frame, strata, score, totals, chosen_seed)
        order = None if keys else by_stratum
    else:
        labels, order = _labels_plain(score, totals)
    subsets = {
        name: frame.take(_ordered(np.flatnonzero(labels == k).astype(np.int64), score, shuffle))
        for k, name in enumerate(names)
    }
    check = _leakage_check(names, score, labels, order, leakage, keys, groups)
    _record(
        recorder,
        frame,
        {
            "op": "split",
            "args": {
                "fractions": {name: float(fractions[name]) for name in names},
                "stratify": list(strata),
                "group": list(groups),
                "key": list(keys),
                "leakage": leakage,
                "shuffle": shuffle,
            },
            "seed": chosen_seed,
            "seed_from": seed_from,
            "algorithm": SCORE_VERSION,
            "leakage": check,
        },
        subsets,
    )
    overlaps = [item for item in check.get("overlaps", []) if item["rows"] or item["groups"]]
    if overlaps:
        message = leakage_message("split() subsets overlap", overlaps, keys, groups)
        if leakage == "error":
            raise LeakageError(message, overlaps=tuple(overlaps))
        warnings.warn(message, LeakageWarning, stacklevel=2)
    return subsets


def _leakage_check(
    names: Sequence[str],
    score: Any,
    labels: Any,
    order: Any,
    mode: str,
    keys: Sequence[str],
    groups: Sequence[str],
) -> dict[str, Any]:
    """Return the leakage record of a split (overlap counts of every pair of subsets)."""
    if mode == "off":
        return {"mode": "off", "by": None, "overlaps": [], "outcome": "skipped"}
    matrix = pairwise_overlaps(score, labels, len(names), order)
    overlaps = []
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            overlaps.append(
                {
                    "subsets": [names[a], names[b]],
                    "rows": int(matrix[a, b]),
                    # Groups are never divided by construction; recorded for the audit.
                    "groups": 0 if groups else None,
                }
            )
    leaked = any(item["rows"] for item in overlaps)
    outcome = "ok" if not leaked else ("refused" if mode == "error" else "warned")
    return {
        "mode": mode,
        "by": "key" if keys else "content",
        "overlaps": overlaps,
        "outcome": outcome,
    }
