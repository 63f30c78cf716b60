"""A run's step runs come back in the order they started, whatever order they were written in."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipetrail.ledger.ledger import Ledger, sqlite_url
from pipetrail.ledger.read_model import step_run_records

if TYPE_CHECKING:
    from pathlib import Path

_INSERT = (
    "INSERT INTO step_runs (step_run_id, run_id, node_id, step, pipeline, status, "
    "components, inputs, outputs, started_at, first_seq, last_seq) VALUES (:id, :run, :id, "
    "'s', 'p', 'completed', '{\"n\":12345678901234567890}', '{}', :outputs, 't', :seq, :seq)"
)


def _read(tmp_path: Path, seqs: list[int]) -> list[tuple[str, int]]:
    with Ledger.open(sqlite_url(tmp_path / "ledger.db"), actor="t") as ledger:
        with ledger.db.write() as db:
            for i, seq in enumerate(seqs):
                db.execute(
                    _INSERT, {"id": f"s{i}", "run": "R", "seq": seq, "outputs": f'{{"o":"{i}"}}'}
                )
            db.execute(_INSERT, {"id": "other", "run": "Q", "seq": 1, "outputs": None})
        rows = ledger.reader().step_runs("R")
        records = step_run_records(ledger.reader(), "R")
    # the read API's records: the same step runs, in the same order
    assert [(r.step_run_id, r.outputs) for r in records] == [
        (row["step_run_id"], row["outputs"]) for row in rows
    ]
    assert all(row["components"] == {"n": 12345678901234567890} for row in rows)
    assert all(row["outputs"] == {"o": row["step_run_id"][1:]} for row in rows)
    return [(row["step_run_id"], row["first_seq"]) for row in rows]


def test_rows_written_in_start_order_come_back_in_it(tmp_path: Path) -> None:
    assert _read(tmp_path, [3, 5, 9]) == [("s0", 3), ("s1", 5), ("s2", 9)]


def test_rows_written_out_of_start_order_come_back_in_it(tmp_path: Path) -> None:
    assert _read(tmp_path, [9, 3, 5, 4]) == [("s1", 3), ("s3", 4), ("s2", 5), ("s0", 9)]
