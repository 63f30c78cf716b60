"""Migration 0010 on both backends: one name-led index for params, none for metric names.

``run_params`` keeps one index (name, num, value, run_id) instead of one on (name, value,
run_id) and one on (name, num, run_id); ``run_metrics`` loses its (name, value, run_id)
index, and its (key, value, run_id) index holds the name too. A store at 0009 is
upgraded on open; every query that used the dropped indexes finds the same runs before
and after, and on SQLite its plan still searches an index (no scan, no sort for the
newest-first listing by a parameter, no table read for a metric's name).
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from pipetrail.errors import ParamError
from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.ledger import Ledger
from pipetrail.ledger.migrate import HEAD_REVISION, current_revision
from pipetrail.ledger.read_model import RunFilter, find_runs
from pipetrail.ledger.run_query import metric_keys, parse_sort, parse_where
from tests.support.ledger_schema import downgrade

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.postgres

_AT = "2026-01-01T00:00:00.000000Z"
# Values whose number and text differ in every way the filter must keep apart.
_PARAMS: list[dict[str, Any]] = [
    {"C": 1, "model": "lr", "flag": True, "opt": None, "big": 2**60 + 1},
    {"C": 1.0, "model": "rf", "flag": False, "opt": "adam", "big": 2**60},
    {"C": 2.5, "model": "lr", "flag": True, "opt": "1", "big": 3},
    {"C": "1", "model": "lr", "flag": 1, "opt": 1.5, "big": 2**60 + 1},
]


def _fill(ledger: Ledger) -> list[str]:
    ids = []
    for n, params in enumerate(_PARAMS):
        run_id = f"R{n}"
        ids.append(run_id)
        start = {
            "run_id": run_id,
            "pipeline": "p",
            "pipeline_fingerprint": "blake3:" + "f" * 64,
            "owner": "tester",
            "host": "h",
            "process": "1",
            "params": params,
            "seed": 1,
            "git": None,
            "environment": None,
            "started_at": _AT,
            "steps_total": 1,
            "purpose": "run",
        }
        step = {
            "step_run_id": f"S{n}",
            "run_id": run_id,
            "node_id": "scores",  # a key with a dot: the name is scores.test.acc
            "step": "scores",
            "pipeline": "p",
            "started_at": _AT,
            "ended_at": _AT,
            "decision": "miss",
            "outputs": {},
            "metrics": {"loss": {"count": 1, "min": n, "max": n, "last": n / 10}},
            "output_metrics": {"test.acc": 0.5 + n / 10, "f1": 0.9 - n / 10},
        }
        ledger.append(
            [
                EventDraft(EventKind.RUN_STARTED, start, run_id=run_id),
                EventDraft(EventKind.STEP_COMPLETED, step, run_id=run_id),
                EventDraft(EventKind.RUN_COMPLETED, {"run_id": run_id, "ended_at": _AT}),
            ]
        )
    return ids


_QUERIES: list[dict[str, Any]] = [
    {"params": {"C": 1}},
    {"params": {"C": 1.0}},
    {"params": {"C": "1"}},
    {"params": {"C": 2.5}},
    {"params": {"model": "lr"}},
    {"params": {"model": "lr", "flag": True}},
    {"params": {"flag": True}},
    {"params": {"flag": 1}},
    {"params": {"opt": None}},
    {"params": {"opt": "1"}},
    {"params": {"opt": 1.5}},
    {"params": {"big": 2**60 + 1}},
    {"params": {"big": 2**60}},
    {"params": {"C": 3}},
    {"params": {"model": "lr"}, "limit": 1},
    {"params": {"model": "lr"}, "before": "R3"},
    {"where": "params.C > 0.5"},
    {"where": "params.C = 1"},
    {"where": "params.big >= 3"},
    {"where": "metrics.loss > 0.05"},
    {"where": "metrics.scores.loss <= 0.1"},
    {"where": "metrics.test.acc > 0.55"},
    {"where": "metrics.scores.test.acc < 0.65"},
    {"where": "metrics.f1 >= 0.7 and params.model = lr"},
    {"where": "metrics.acc > 0"},  # a suffix that is neither a key nor a name
    {"sort": "metrics.test.acc"},
    {"sort": "-params.C"},
]


def _answers(ledger: Ledger) -> list[Any]:
    found: list[Any] = []
    for query in _QUERIES:
        f = _filter(query)
        try:
            found.append([run.run_id for run in find_runs(ledger.reader(), f)])
        except ParamError as exc:
            found.append(str(exc))
    return found


def _filter(query: dict[str, Any]) -> RunFilter:
    args = dict(query)
    if "where" in args:
        args["where"] = tuple(parse_where(args["where"]))
    if "sort" in args:
        args["sort"] = parse_sort(args["sort"])
    return RunFilter(**args)


def _indexes(ledger: Ledger, table: str) -> set[str]:
    return {str(ix["name"]) for ix in sa.inspect(ledger.engine).get_indexes(table)}


_OLD_PARAMS = {"ix_run_params_name_value", "ix_run_params_name_num"}
_NEW_PARAMS = {"ix_run_params_name_num_value"}


def test_a_store_at_0009_is_upgraded_and_every_query_finds_the_same_runs(
    metadata_url: str,
) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    _fill(ledger)
    after = _answers(ledger)
    downgrade(ledger, "0009")
    assert current_revision(ledger.engine) == "0009"
    assert _indexes(ledger, "run_params") >= _OLD_PARAMS
    assert not _NEW_PARAMS & _indexes(ledger, "run_params")
    assert "ix_run_metrics_name_value" in _indexes(ledger, "run_metrics")
    before = _answers(ledger)
    ledger.close()

    ledger = Ledger.open(metadata_url, actor="tester")  # upgrades on open
    try:
        assert current_revision(ledger.engine) == HEAD_REVISION
        assert _indexes(ledger, "run_params") >= _NEW_PARAMS
        assert not _OLD_PARAMS & _indexes(ledger, "run_params")
        assert _indexes(ledger, "run_metrics") == {
            "ix_run_metrics_key_value_name",
            "ix_run_metrics_run_id",
        }
        assert _answers(ledger) == before == after
        # The answers themselves (not only their agreement across the migration).
        assert before[0] == before[1] == ["R1", "R0"]  # 1 and 1.0 are one value
        assert before[2] == ["R3"]  # the text "1" is not the number
        assert before[6] == ["R2", "R0"]  # true is not 1
        assert before[7] == ["R3"]
        assert before[8] == ["R0"]  # None
        assert before[11] == ["R3", "R0"]  # beyond a float's precision: by the text
        assert before[12] == ["R1"]
        assert before[13] == []
        assert before[14] == ["R3"]
        assert before[15] == ["R2", "R0"]
        assert before[16] == ["R2", "R1", "R0"]  # "1" is not a number
        assert before[21] == ["R3", "R2", "R1"]
        assert before[22] == ["R1", "R0"]
        assert before[23] == ["R2", "R0"]
        assert "no run records a metric 'acc'" in before[24]
        assert ledger.verify().ok
    finally:
        ledger.close()


def test_a_store_at_0010_goes_back_to_0009(metadata_url: str) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    try:
        _fill(ledger)
        before = _answers(ledger)
        downgrade(ledger, "0009")
        assert _indexes(ledger, "run_params") >= _OLD_PARAMS
        assert "ix_run_metrics_name_value" in _indexes(ledger, "run_metrics")
        assert _answers(ledger) == before
        assert ledger.verify().ok
    finally:
        ledger.close()


class _Recording:
    """A reader that keeps the statements it ran."""

    def __init__(self, reader: Any) -> None:
        self._reader = reader
        self.statements: list[tuple[str, dict[str, Any]]] = []

    def fetch(self, sql: str, params: dict[str, Any] | None = None) -> Any:
        self.statements.append((sql, dict(params or {})))
        return self._reader.fetch(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


def _plans(path: str, ledger: Ledger, query: dict[str, Any]) -> list[str]:
    reader = _Recording(ledger.reader())
    find_runs(reader, _filter(query))  # type: ignore[arg-type]
    plans = []
    with sqlite3.connect(path) as conn:
        for sql, params in reader.statements:
            if "run_tags" in sql and "r.run_id" not in sql:
                continue  # the listed runs' tags, by run id
            rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
            plans.append(" | ".join(str(row[-1]) for row in rows))
    return plans


@pytest.mark.parametrize(
    ("query", "index", "sorted_by_index"),
    [
        ({"params": {"C": 1}, "limit": 10}, "ix_run_params_name_num_value", True),
        ({"params": {"model": "lr"}, "limit": 10}, "ix_run_params_name_num_value", True),
        ({"params": {"opt": None}, "limit": 10}, "ix_run_params_name_num_value", True),
        ({"where": "params.C > 0.5"}, "ix_run_params_name_num_value", False),
        ({"where": "metrics.scores.test.acc > 0.5"}, "ix_run_metrics_key_value_name", False),
        ({"where": "metrics.f1 > 0.5"}, "ix_run_metrics_key_value_name", False),
    ],
)
def test_each_filter_searches_an_index(
    tmp_path: Path, query: dict[str, Any], index: str, sorted_by_index: bool
) -> None:
    path = str(tmp_path / "ledger.db")
    ledger = Ledger.open(f"sqlite:///{path}", actor="tester")
    try:
        _fill(ledger)
        plans = _plans(path, ledger, query)
    finally:
        ledger.close()
    # Every statement (the check that the name is known, then the listing) searches an
    # index; none scans run_params or run_metrics.
    assert all("SCAN p" not in plan and "SCAN m" not in plan for plan in plans), plans
    assert all("SCAN run_params" not in p and "SCAN run_metrics" not in p for p in plans), plans
    # Nor reads the table for a name: the index holds it.
    assert all("COVERING INDEX" in plan for plan in plans if "ix_run_metrics" in plan), plans
    listing = plans[-1]  # the name checks come first
    assert index in listing, plans
    if sorted_by_index:  # newest first straight from the index
        assert "TEMP B-TREE" not in listing, plans


def test_metric_keys_are_the_name_and_what_follows_each_dot() -> None:
    assert metric_keys("f1") == ["f1"]
    assert metric_keys("fit.f1") == ["fit.f1", "f1"]
    assert metric_keys("scores.test.acc") == ["scores.test.acc", "test.acc", "acc"]
    assert metric_keys("a..b.") == ["a..b.", ".b.", "b.", ""]
