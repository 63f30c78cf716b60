"""Contract checks on a 1,000,000-row, 20-column pandas table, against pandera alone.

The table (built once per process, seeded): 12 int64 columns, 6 float64 columns and 2
string columns of 1,000,000 rows. The schema: every column typed and not nullable, a
range check on every numeric column, an allowed-values check on both string columns, and
one column unique: 93 checks in all, counting presence, dtype and nullability per column.
The pipetrail contract adds row-count bounds.

Each repetition times, back to back and alternating which goes first:

* **pandera**: ``schema.validate(table, lazy=True)``, what a user calls by hand;
* **pipetrail**: :func:`pipetrail.contracts.check_boundary` with
  ``Contract(schema, rows=(1, None))``, what a step's execution calls for each boundary:
  the same validation once, plus the row count and the result of every check (derived
  from the schema's list of checks minus pandera's failure cases, never a second pass).

The ratio (pipetrail / pandera) is computed per repetition, from the two timings taken
next to each other; the target is on its median. Rows ``*.failing`` repeat this on a copy
of the table in which 1% of the values of two columns break their range check: pandera
then builds its failure cases, which pipetrail groups into counts and examples.

| row | what | target |
|-----|------|--------|
| ``contracts.pandera`` | ``schema.validate(lazy=True)``, valid table | context |
| ``contracts.pipetrail`` | ``check_boundary``, valid table | context |
| ``contracts.ratio`` | pipetrail / pandera, valid table | <= 2.0 x |
| ``contracts.ratio.failing`` | pipetrail / pandera, 20,000 failing values | context |
| ``contracts.fingerprint`` | ``fingerprint_contract`` of the contract (once per run) | context |

Run: ``.venv/bin/python benchmarks/contracts.py [--quick]``.
"""

from __future__ import annotations

import contextlib
import sys
import time

from _common import Result, log, main, summarize, time_call

ROWS = 1_000_000
TARGET_RATIO = 2.0


def _table() -> object:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    columns: dict[str, object] = {}
    for i in range(12):
        columns[f"i{i}"] = rng.integers(0, 1000, ROWS, dtype="int64")
    columns["i0"] = np.arange(ROWS, dtype="int64")  # the unique column
    for i in range(6):
        columns[f"f{i}"] = rng.random(ROWS)
    columns["s0"] = pd.Series(rng.choice(["a", "b", "c"], ROWS))
    columns["s1"] = pd.Series(rng.choice(["red", "green", "blue", "grey"], ROWS))
    return pd.DataFrame(columns)


def _schema() -> object:
    import pandera.pandas as pa

    columns = {}
    for i in range(12):
        checks = [pa.Check.ge(0), pa.Check.lt(ROWS if i == 0 else 1000)]
        columns[f"i{i}"] = pa.Column("int64", checks, nullable=False, unique=i == 0)
    for i in range(6):
        columns[f"f{i}"] = pa.Column("float64", pa.Check.in_range(0.0, 1.0), nullable=False)
    columns["s0"] = pa.Column(str, pa.Check.isin(["a", "b", "c"]), nullable=False)
    columns["s1"] = pa.Column(str, pa.Check.isin(["red", "green", "blue", "grey"]))
    return pa.DataFrameSchema(columns)


def _broken(table: object) -> object:
    frame = table.copy()  # type: ignore[attr-defined]
    step = 100  # 1% of the rows
    frame.loc[::step, "i3"] = -1
    frame.loc[::step, "f2"] = 2.0
    return frame


def _pair(direct: object, ours: object, reps: int) -> tuple[list[float], list[float]]:
    first: list[float] = []
    second: list[float] = []
    for rep in range(reps):
        order = [(direct, first), (ours, second)]
        if rep % 2:
            order.reverse()
        for func, into in order:
            into.append(time_call(func))  # type: ignore[arg-type]
        log(f"  rep {rep + 1}: pandera {first[-1]:.3f} s, pipetrail {second[-1]:.3f} s")
    return first, second


def run(quick: bool) -> list[Result]:
    import pandera.errors

    from pipetrail.contracts import Contract, check_boundary, fingerprint_contract
    from pipetrail.core.contract import Boundary

    reps = 3 if quick else 7
    log(f"contracts: building a {ROWS:,} x 20 table")
    table = _table()
    schema = _schema()
    contract = Contract(schema, rows=(1, None))
    boundary = Boundary("input", "table", contract)
    started = time.perf_counter()
    fingerprint = fingerprint_contract(contract).digest
    fingerprint_s = time.perf_counter() - started

    def direct(value: object) -> object:
        def call() -> None:
            with contextlib.suppress(pandera.errors.SchemaErrors):
                schema.validate(value, lazy=True)  # type: ignore[attr-defined]

        return call

    def ours(value: object, ok: bool) -> object:
        def call() -> None:
            found = check_boundary(boundary, value, fingerprint=fingerprint)
            assert found.ok is ok
            assert len(found.checks) == 94  # 93 schema checks and the row count

        return call

    log("contracts: warm-up")
    direct(table)()  # type: ignore[operator]
    ours(table, True)()  # type: ignore[operator]
    log(f"contracts: {reps} repetitions, valid table")
    plain_a, plain_b = _pair(direct(table), ours(table, True), reps)
    broken = _broken(table)
    fail_reps = max(2, reps // 2)
    log(f"contracts: {fail_reps} repetitions, 1% of two columns failing")
    fail_a, fail_b = _pair(direct(broken), ours(broken, False), fail_reps)
    return [
        summarize("contracts.pandera", "schema.validate(lazy=True), valid", plain_a, "s"),
        summarize("contracts.pipetrail", "check_boundary, valid table", plain_b, "s"),
        summarize(
            "contracts.ratio",
            "pipetrail / pandera, 1M x 20 valid table",
            [b / a for a, b in zip(plain_a, plain_b, strict=True)],
            "x",
            at_most=TARGET_RATIO,
        ),
        summarize(
            "contracts.ratio.failing",
            "pipetrail / pandera, 20,000 failing values",
            [b / a for a, b in zip(fail_a, fail_b, strict=True)],
            "x",
        ),
        summarize(
            "contracts.fingerprint",
            "fingerprint_contract (once per run)",
            [fingerprint_s * 1e3],
            "ms",
        ),
    ]


if __name__ == "__main__":
    sys.exit(main(run, (__doc__ or "").splitlines()[0]))
