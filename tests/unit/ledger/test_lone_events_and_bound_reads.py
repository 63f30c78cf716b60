"""A lone ``run.started`` is encoded once; SQLite reads bind their parameters by position."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

import pytest

import pipetrail.ledger.ledger as ledger_module
from pipetrail.hashing.canonical import canonical_json, member_json
from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.driver import Driver
from pipetrail.ledger.ledger import Ledger

if TYPE_CHECKING:
    from pathlib import Path

TS = "2026-01-01T00:00:00.000000Z"


def _started() -> EventDraft:
    payload = {
        "run_id": "R1",
        "pipeline": "p",
        "pipeline_fingerprint": "blake3:" + "1" * 64,
        "owner": "me",
        "host": "h",
        "process": "1:1",
        "params": {"a": 1, "b": 2.5},
        "seed": 0,
        "git": {"commit": "c", "dirty": False},
        "environment": None,
        "started_at": TS,
        "steps_total": 2,
        "nodes": [{"id": f"n{i}", "inputs": {"x": [i, 0.5, None]}} for i in range(3)],
    }
    return EventDraft(EventKind.RUN_STARTED, payload, run_id="R1")


def test_a_lone_run_start_has_its_columns_encoded_by_the_ledgers_encoder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its payload was checked once when encoded; the projection does not walk it again."""
    encoded: list[Any] = []

    def spy(value: Any) -> str | None:
        encoded.append(value)
        return member_json(value)

    monkeypatch.setattr(ledger_module, "member_json", spy)
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", actor="tester")
    ledger.append([_started()])
    monkeypatch.undo()
    payload = _started().payload
    assert payload["params"] in encoded
    assert payload["git"] in encoded
    assert any(isinstance(v, dict) and v.get("nodes") == payload["nodes"] for v in encoded)
    row = ledger.db.fetch("SELECT params, git, record FROM runs")[0]
    assert row["params"] == canonical_json(payload["params"])
    assert row["git"] == canonical_json(payload["git"])
    assert '"nodes":[{"id":"n0"' in row["record"]
    report = ledger.verify()  # the rebuild projects it with the reference encoder
    assert report.derived_checked
    assert report.ok, [p.message for p in report.derived]
    ledger.close()


class _Recording:
    """A ``sqlite3`` connection whose cursors record what ``execute`` is given."""

    def __init__(self) -> None:
        self.connection = sqlite3.connect(":memory:")
        self.seen: list[tuple[str, Any]] = []

    def cursor(self) -> Any:
        seen = self.seen

        class Cursor(sqlite3.Cursor):
            def execute(self, sql: str, parameters: Any = (), /) -> Any:
                seen.append((sql, parameters))
                return super().execute(sql, parameters)

        return self.connection.cursor(Cursor)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "isolation_level":
            self.connection.isolation_level = value
        else:
            super().__setattr__(name, value)


def test_sqlite_reads_bind_their_parameters_by_position() -> None:
    """Binding hundreds of parameters by name costs SQLite a search of each name."""
    recording = _Recording()
    db = Driver(recording, "sqlite")
    many = {f"r{i}": i for i in range(600)} | {"b": 5, "a": 1}
    assert db.rows("SELECT :b - :a, :a", many) == [(4, 1)]
    assert recording.seen[-1] == ("SELECT ?1 - ?2, ?2", [5, 1])
    marks = ", ".join(f":r{i}" for i in range(600))
    text = f"SELECT count(*) FROM (SELECT 1 AS v) WHERE v IN ({marks})"  # noqa: S608
    assert db.rows(text, many) == [(1,)]
    assert recording.seen[-1][1] == list(range(600))
    # A few parameters, a text with a quote (a ``:name`` inside a literal is no
    # parameter), or a parameter missing: bound by name as before.
    assert db.rows("SELECT :b - :a", {"a": 1, "b": 5}) == [(4,)]
    assert recording.seen[-1] == ("SELECT :b - :a", {"a": 1, "b": 5})
    assert db.rows("SELECT :a || ':b'", many | {"a": "x"}) == [("x:b",)]
    assert recording.seen[-1] == ("SELECT :a || ':b'", many | {"a": "x"})
    with pytest.raises(sqlite3.ProgrammingError):
        db.rows("SELECT :a, :c", many)
    assert recording.seen[-1] == ("SELECT :a, :c", many)
