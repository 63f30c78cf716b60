"""Deterministic data operations: seeded ``sample`` and ``split``, and the leakage check.

The public API of this package is its ``__all__``::

    from pipetrail import data

    parts = data.split(df, {"train": 0.7, "val": 0.15, "test": 0.15}, seed=7, stratify="y")
    small = data.sample(df, n=1_000, seed=7)
    data.assert_no_leakage(parts["train"], parts["test"], key="id")

The same table and seed give the same subsets (the same digests) on every machine: rows
are ordered by a seeded hash of their values, not by a random number generator (see
:mod:`pipetrail.data.row_identity` and :mod:`pipetrail.data.allocate`). Inside a step the
seed defaults to the step's derived seed and each operation is recorded in the step's
ledger event (see :mod:`pipetrail.data.ops`). docs/data.md is the user guide.

pandas, polars and pyarrow are imported only when a table of theirs is given, so importing
this package stays cheap. Sits beside ``pipetrail.lineage``: may import the execution
layer and below, never the CLI.
"""

from __future__ import annotations

from pipetrail.data.leakage import Leakage as Leakage
from pipetrail.data.leakage import assert_no_leakage as assert_no_leakage
from pipetrail.data.leakage import check_leakage as check_leakage
from pipetrail.data.ops import sample as sample
from pipetrail.data.ops import split as split
from pipetrail.errors import LeakageError as LeakageError
from pipetrail.errors import LeakageWarning as LeakageWarning

__all__ = [
    "Leakage",
    "LeakageError",
    "LeakageWarning",
    "assert_no_leakage",
    "check_leakage",
    "sample",
    "split",
]
