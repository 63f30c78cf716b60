"""Cost of the deterministic data operations on a 1,000,000-row table.

The table is a pandas DataFrame of 1,000,000 rows and 5 columns: an int64 id, two
float64 features, an int64 class label with 3 classes and a string column with 50,000
distinct values (the group column). It is built once, untimed. Each repetition times one
call, in this process:

* ``split``: ``split(df, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=...)``, rows
  compared by content (every column hashed) and the leakage check on;
* ``split_stratified``: the same with ``stratify="label"``;
* ``split_grouped``: the same with ``group="user"``;
* ``split_in_step``: the plain split while a step recorder is active, so the call also
  computes the input's and the three subsets' table digests and records the operation;
* ``sample``: ``sample(df, frac=0.1, seed=...)``;
* ``split_polars``: the plain split of the same table as a polars DataFrame.

The seed changes from one repetition to the next, so no repetition reuses another's work.

| row | what | target |
|-----|------|--------|
| ``data_ops.split`` | plain split, 1,000,000 rows | <= 1 s |
| ``data_ops.split_in_step`` | plain split inside a step (digests + record) | <= 2 s |
| others | stratified, grouped, sample, polars | context |

Run: ``.venv/bin/python benchmarks/data_ops.py [--quick]``.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

from _common import Result, log, main, summarize, time_call

from pipetrail import data
from pipetrail.execution.metrics import StepRecorder, recording
from pipetrail.store import default_registry
from pipetrail.store.memory import MemoryStore

ROWS = 1_000_000
FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}
SPLIT_TARGET_S = 1.0
IN_STEP_TARGET_S = 2.0


def _table() -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    users = np.array([f"user-{i:05d}" for i in range(50_000)], dtype=object)
    return pd.DataFrame(
        {
            "id": np.arange(ROWS, dtype=np.int64),
            "x1": rng.normal(size=ROWS),
            "x2": rng.normal(size=ROWS),
            "label": rng.integers(0, 3, size=ROWS),
            "user": pd.array(users[rng.integers(0, 50_000, size=ROWS)], dtype="str"),
        }
    )


def _in_step(df: Any, seed: int) -> None:
    recorder = StepRecorder("bench", MemoryStore(), default_registry(), seed=seed)
    with recording(recorder):
        data.split(df, FRACTIONS)
    if len(recorder.data_ops) != 1:
        raise RuntimeError("the split was not recorded")


def _times(name: str, reps: int, call: Any) -> list[float]:
    call(10_000)  # warm-up
    samples = [time_call(functools.partial(call, seed)) for seed in range(reps)]
    log(f"  {name}: " + ", ".join(f"{s:.3f}" for s in samples) + " s")
    return samples


def run(quick: bool) -> list[Result]:
    import polars as pl

    reps = 3 if quick else 7
    log(f"data_ops: building a {ROWS:,}-row table, then {reps} repetitions per row")
    df = _table()
    frame = pl.from_pandas(df)
    rows = [
        (
            "split",
            "split 70/15/15 of 1,000,000 rows (pandas), content-checked",
            lambda seed: data.split(df, FRACTIONS, seed=seed),
            SPLIT_TARGET_S,
        ),
        (
            "split_in_step",
            "the same inside a step: + 4 table digests and the record",
            lambda seed: _in_step(df, seed),
            IN_STEP_TARGET_S,
        ),
        (
            "split_stratified",
            "split with stratify='label' (3 classes)",
            lambda seed: data.split(df, FRACTIONS, seed=seed, stratify="label"),
            None,
        ),
        (
            "split_grouped",
            "split with group='user' (50,000 groups)",
            lambda seed: data.split(df, FRACTIONS, seed=seed, group="user"),
            None,
        ),
        (
            "sample",
            "sample(frac=0.1) of 1,000,000 rows",
            lambda seed: data.sample(df, frac=0.1, seed=seed),
            None,
        ),
        (
            "split_polars",
            "split of the same table as a polars DataFrame",
            lambda seed: data.split(frame, FRACTIONS, seed=seed),
            None,
        ),
    ]
    results = []
    for name, measured, call, target in rows:
        samples = _times(name, reps, call)
        results.append(summarize(f"data_ops.{name}", measured, samples, "s", at_most=target))
    return results


if __name__ == "__main__":
    sys.exit(main(run, "Cost of seeded split and sample on a 1,000,000-row table."))
