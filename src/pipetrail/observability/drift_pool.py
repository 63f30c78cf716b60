"""Pooled baselines for drift: one profile standing for several runs' tables.

Owns how the profiles of several tables (the same output of a step in several runs) are
combined into one, so that ``pipetrail drift RUN_A RUN_B --baseline-runs N`` compares run
B with the usual state of the data rather than with one run that may itself be odd.

**Which runs.** :func:`baseline_runs` picks the baseline: with run A given, run A and the
``N - 1`` completed ordinary runs (purpose ``run``) of A's pipeline that started before
it; without, the ``N`` completed ordinary runs of B's pipeline that started before B.
Fewer are used when fewer exist; the report lists the runs pooled.

**Which tables.** Each step output is taken from every pooled run whose step pairs with
the newest pooled run's (as ``diff`` pairs them). A table that several runs share (a
cached step gives the same digest each time) counts **once**: counting it N times would
make the baseline look N times larger than the data it holds, and sampling noise smaller
than it is.

**How profiles pool** (:func:`pool_profiles`), column by column of the newest table (a
column missing from an older table, or of another type there, takes nothing from it):

* ``rows``, ``nulls``, ``non_finite``: sums.
* numeric and temporal columns: ``min``/``max`` over all; ``mean`` and ``std``
  (population) of the union, exact, from each table's count, mean and std; the histogram
  re-binned onto ``HISTOGRAM_BINS`` equal bins over the pooled min..max (counts spread
  evenly inside each original bin, as :mod:`pipetrail.observability.drift_stats` does)
  and summed. Quantiles cannot be pooled from summaries and are left out; ``distinct``
  is the largest of the tables' (a lower bound, ``distinct_exact`` false).
* categorical columns: a value is kept when every table lists it among its top values,
  or lists all its values (``other`` 0, so the value's count there is known to be 0);
  its counts are summed. Everything else is pooled into ``other``, so the pooled counts
  add up to the pooled non-null rows and no count is guessed.
* skipped columns: the newest table's entry.

Pure apart from :func:`baseline_runs`, which reads runs through the ledger's read model.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from pipetrail.errors import ParamError
from pipetrail.observability.drift_stats import json_key, rebin

if TYPE_CHECKING:
    from pipetrail.ledger import Reader

__all__ = ["HISTOGRAM_BINS", "MAX_BASELINE_RUNS", "baseline_runs", "pool_profiles"]

HISTOGRAM_BINS = 20
#: More runs than this is a history, not a baseline.
MAX_BASELINE_RUNS = 1000


def baseline_runs(
    reader: Reader, *, before: str, pipeline: str, count: int, inclusive: bool
) -> list[str]:
    """The runs pooled as the baseline, newest first (see the module docstring).

    Args:
        reader: the ledger's reader.
        before: a run id; the baseline is taken from the runs that started before it.
        pipeline: the pipeline they must be runs of.
        count: how many runs to pool (1 to :data:`MAX_BASELINE_RUNS`).
        inclusive: whether ``before`` itself is the first of them (run A given).

    Raises:
        ParamError: ``count`` is out of range, or no such run exists.
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_BASELINE_RUNS:
        raise ParamError(
            f"--baseline-runs must be a whole number from 1 to {MAX_BASELINE_RUNS}, got {count!r}"
        )
    # Only a pooled baseline lists runs: a drift of two named runs does not import this.
    from pipetrail.ledger.read_model import RunFilter, find_runs

    found = [before] if inclusive else []
    earlier = find_runs(
        reader, RunFilter(pipeline=pipeline, status="completed", purpose="run", limit=None)
    )
    found += [r.run_id for r in earlier if r.run_id < before][: count - len(found)]
    if not found:
        raise ParamError(
            f"no completed run of pipeline {pipeline!r} started before run {before}, so there "
            "is no baseline to pool; name the baseline run: pipetrail drift RUN_A RUN_B",
            problems=(("baseline-runs", "no earlier run"),),
        )
    return found


def _numeric(columns: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool numeric (or temporal) column profiles (module docstring)."""
    with_values = [c for c in columns if c.get("histogram")]
    pooled = {
        **columns[0],
        "distinct": max(int(c.get("distinct") or 0) for c in columns),
        "distinct_exact": len(columns) == 1 and bool(columns[0].get("distinct_exact")),
        "quantiles": None,
        "non_finite": sum(int(c.get("non_finite") or 0) for c in columns),
    }
    pooled.pop("sample_stride", None)
    if not with_values:
        return {**pooled, "min": None, "max": None, "mean": None, "std": None, "histogram": None}
    sizes = [float(sum(c["histogram"]["counts"])) for c in with_values]
    total = sum(sizes)
    low = min(float(c["min"]) for c in with_values)
    high = max(float(c["max"]) for c in with_values)
    mean = sum(n * float(c["mean"]) for n, c in zip(sizes, with_values, strict=True)) / total
    square = (
        sum(
            n * (float(c["std"]) ** 2 + float(c["mean"]) ** 2)
            for n, c in zip(sizes, with_values, strict=True)
        )
        / total
    )
    if high <= low:
        edges = [low, high]
    else:
        width = (high - low) / HISTOGRAM_BINS
        edges = [low + width * i for i in range(HISTOGRAM_BINS)] + [high]
    counts = [0.0] * (len(edges) - 1)
    for column in with_values:
        for i, count in enumerate(rebin(column["histogram"], edges)):
            counts[i] += count
    return {
        **pooled,
        "min": low,
        "max": high,
        "mean": mean,
        "std": math.sqrt(max(0.0, square - mean * mean)),
        "histogram": {"edges": edges, "counts": counts},
    }


def _categorical(columns: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool categorical column profiles (module docstring)."""
    tops = [{json_key(v): (v, int(n)) for v, n in c.get("top") or []} for c in columns]
    complete = [int(c.get("other", 0)) == 0 for c in columns]
    labels: dict[str, Any] = {}
    for top in tops:
        for label, (value, _) in top.items():
            labels.setdefault(label, value)
    kept = {
        label: value
        for label, value in labels.items()
        if all(label in top or whole for top, whole in zip(tops, complete, strict=True))
    }
    counts = {label: sum(top.get(label, (None, 0))[1] for top in tops) for label in kept}
    listed = sum(n for top in tops for _, n in top.values())
    valid = listed + sum(int(c.get("other", 0)) for c in columns)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {
        **columns[0],
        "distinct": max(int(c.get("distinct") or 0) for c in columns),
        "distinct_exact": len(columns) == 1 and bool(columns[0].get("distinct_exact")),
        "top": [[kept[label], count] for label, count in ordered],
        "other": valid - sum(counts.values()),
    }


def pool_profiles(profiles: list[dict[str, Any]]) -> dict[str, Any]:
    """Return one profile standing for ``profiles`` together, newest first.

    The first profile sets the columns, their order and types (module docstring). One
    profile is returned as it is.

    Raises:
        ValueError: ``profiles`` is empty.
    """
    if not profiles:
        raise ValueError("pool_profiles needs at least one profile")
    if len(profiles) == 1:
        return profiles[0]
    newest = profiles[0]
    by_name = [{c["name"]: c for c in p["columns"]} for p in profiles]
    columns = []
    for column in newest["columns"]:
        name, type_name = column["name"], column["type"]
        matching = [
            (profile["rows"], found[name])
            for profile, found in zip(profiles, by_name, strict=True)
            if name in found and found[name]["type"] == type_name
        ]
        same = [c for _, c in matching]
        merged: dict[str, Any] = dict(column)
        if column["kind"] in ("numeric", "temporal"):
            merged = _numeric(same)
        elif column["kind"] == "categorical":
            merged = _categorical(same)
        merged["nulls"] = sum(int(c.get("nulls") or 0) for c in same)
        # A column's null rate is over the rows of the tables it came from.
        merged["pooled_rows"] = sum(int(n) for n, _ in matching)
        columns.append(merged)
    return {
        "schema_version": newest.get("schema_version", 1),
        "rows": sum(int(p["rows"]) for p in profiles),
        "columns": columns,
        "pooled": len(profiles),
    }
