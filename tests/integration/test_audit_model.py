"""``audit verify`` checks the largest tables against rows built in Python, never falsely.

:mod:`pipetrail.ledger.audit_model` builds the rows of ``step_runs``, ``step_run_io``,
``run_metrics``, ``artifacts`` and ``sources`` from the events instead of replaying them.
Each edit below is one a model following the projections loosely would miss (a row a
first-wins rule keeps, a step a run end must not close, a failed step's outputs, a hit's
own metric...). For each, the model itself must refuse (:class:`Unmodelled`), and the
report must be exactly the one the whole replay gives. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.ledger import EventDraft, EventKind, audit, audit_parallel
from pipetrail.ledger.audit_model import Unmodelled
from pipetrail.ledger.ledger import Ledger
from tests.contract.test_ledger import _digest, _exec, _run_drafts
from tests.integration.test_audit_parallel import _rewrite

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

TS = "2026-01-01T00:00:00.000000Z"
TS2 = "2026-01-02T00:00:00.000000Z"


def _step(run_id: str, step_run_id: str) -> dict[str, Any]:
    return {"run_id": run_id, "step_run_id": step_run_id, "node_id": "train", "step": "train",
            "pipeline": "p", "started_at": TS}  # fmt: skip


def _artifact(digest: str, run_id: str, step_run_id: str, **more: Any) -> EventDraft:
    payload = {"digest": digest, "blob": digest, "serializer": "json", "type_name": "dict",
               "size": 9, "meta": {}, "role": "output", "run_id": run_id,
               "step_run_id": step_run_id, **more}  # fmt: skip
    return EventDraft(EventKind.ARTIFACT_RECORDED, payload, run_id=run_id)


def _ledger(url: str) -> Ledger:
    """Runs that exercise every rule of the modelled tables."""
    ledger = Ledger.open(url, actor="tester")
    first = _run_drafts("R1", step_run_id="S1", output=_digest("a"), cache_key=_digest("1"))
    first[4].payload["output_metrics"] = {"auc": 0.9, "rows": 3}
    first[0].payload["params"] = {"lr": 0.1, "label": "x"}
    ledger.append(first)
    second = _run_drafts("R2", step_run_id="S2", output=_digest("b"), cache_key=_digest("2"))
    again = dict(second[1].payload, size=4, observed_at=TS2)  # the same source seen again
    second[2:2] = [
        EventDraft(EventKind.SOURCE_OBSERVED, again, run_id="R2"),
        _artifact(_digest("a"), "R2", "S2"),  # recorded again: the first event's row stays
    ]
    ledger.append(second)
    hit = {**_step("R3", "S3"), "decision": "hit", "reused_step_run_id": "S1",
           "cache_key": _digest("1"), "outputs": {"output": _digest("a")},
           "inputs": {"data": _digest("5")}, "ended_at": TS,
           # logs auc itself: its own value, not S1's output, is its row
           "metrics": {"loss": {"last": 0.5}, "auc": {"last": 0.7}}}  # fmt: skip
    failed = {**_step("R3", "S5"), "decision": "miss", "inputs": {"data": _digest("5")},
              "outputs": {"output": _digest("c")}, "output_metrics": {"acc": 0.8},
              "ended_at": TS, "error": "bad"}  # fmt: skip
    done = {**_step("R3", "S6"), "decision": "miss", "outputs": {"output": _digest("d")},
            "ended_at": TS}  # fmt: skip
    # S4 is running: it closes; S6 completed: it stays as it is
    end = {"run_id": "R3", "ended_at": TS2, "error": "boom",
           "closed_steps": {"S4": "failed", "S6": "interrupted"}}  # fmt: skip
    ledger.append(
        [
            _run_drafts("R3", step_run_id="S3", output=_digest("a"), cache_key=_digest("1"))[0],
            EventDraft(EventKind.STEP_CACHED, hit, run_id="R3"),
            EventDraft(EventKind.STEP_STARTED, _step("R3", "S4"), run_id="R3"),
            EventDraft(EventKind.STEP_STARTED, _step("R3", "S5"), run_id="R3"),
            EventDraft(EventKind.STEP_FAILED, failed, run_id="R3"),
            EventDraft(EventKind.STEP_STARTED, _step("R3", "S6"), run_id="R3"),
            EventDraft(EventKind.STEP_COMPLETED, done, run_id="R3"),
            EventDraft(EventKind.RUN_TAGGED, {"run_id": "R3", "tags": {"k": "v"}}, run_id="R3"),
            EventDraft(EventKind.RUN_FAILED, end, run_id="R3"),
        ]
    )
    # R2's output sealed again: the newer description replaces the row
    ledger.append([_artifact(_digest("b"), "R2", "S2", blob=_digest("e"), resealed_from="k1")])
    ledger.append(
        [
            EventDraft(kind, payload, run_id=payload["run_id"])
            for kind, payload in [
                (EventKind.RUN_NAMED, {"run_id": "R1", "name": "first"}),
                (EventKind.RUN_NAMED, {"run_id": "R1", "name": "second"}),
                (EventKind.RUN_TAGGED, {"run_id": "R1", "tags": {"k": "1"}}),
                (EventKind.RUN_TAGGED, {"run_id": "R1", "tags": {"k": "2"}}),
                (EventKind.RUN_TAGGED, {"run_id": "R2", "tags": {"gone": "x"}}),
                (EventKind.RUN_UNTAGGED, {"run_id": "R2", "keys": ["gone"]}),
                (EventKind.RUN_NOTED, {"run_id": "R2", "text": "hello"}),
                (EventKind.RUN_DELETED, {"run_id": "R2", "reason": "why1"}),
                (EventKind.RUN_DELETED, {"run_id": "R2", "reason": "why2"}),
            ]
        ]
    )
    return ledger


def _seq(ledger: Ledger, kind: str, run_id: str, nth: int = 0) -> int:
    return [e.seq for e in ledger.iter_events() if e.kind == kind and e.run_id == run_id][nth]


def _reference(ledger: Ledger) -> audit.LedgerVerifyReport:
    """The report of the whole replay, in one process, without the model."""
    return audit._verify_alone(ledger.db)


def _model_refuses(ledger: Ledger) -> None:
    with pytest.raises(Unmodelled):
        audit._verify_alone(ledger.db, model=True)


def test_an_intact_ledger_is_checked_by_the_model(metadata_url: str) -> None:
    ledger = _ledger(metadata_url)
    report = audit._verify_alone(ledger.db, model=True)  # no fallback: it did not raise
    assert report.ok, report
    assert report == _reference(ledger) == ledger.verify()
    metrics = ledger.db.rows(
        "SELECT key, value, origin FROM run_metrics WHERE step_run_id = 'S3' ORDER BY key"
    )
    assert metrics == [("auc", 0.7, "logged"), ("loss", 0.5, "logged"), ("rows", 3.0, "output")]
    ledger.close()


# (statement, its parameters, or a function of the ledger giving them; table, key)
def _first_artifact(ledger: Ledger) -> dict[str, Any]:
    seq = _seq(ledger, EventKind.ARTIFACT_RECORDED, "R2")
    return {"a": _digest("a"), "s": seq, "t": next(e.ts for e in ledger.iter_events()
                                                   if e.seq == seq)}  # fmt: skip


def _resealed(ledger: Ledger) -> dict[str, Any]:
    seq = _seq(ledger, EventKind.ARTIFACT_RECORDED, "R2", 1)  # the first recording of b
    return {"b": _digest("b"), "s": seq, "t": next(e.ts for e in ledger.iter_events()
                                                   if e.seq == seq)}  # fmt: skip


def _second_source(ledger: Ledger) -> dict[str, Any]:
    return {"s": _seq(ledger, EventKind.SOURCE_OBSERVED, "R2", 1), "t": TS2}


def _first_tag(ledger: Ledger) -> dict[str, Any]:
    return {"s": _seq(ledger, EventKind.RUN_TAGGED, "R1")}


def _gone_tag(ledger: Ledger) -> dict[str, Any]:
    return {"s": _seq(ledger, EventKind.RUN_TAGGED, "R2")}


def _second_deletion(ledger: Ledger) -> dict[str, Any]:
    return {"s": _seq(ledger, EventKind.RUN_DELETED, "R2", 1)}


def _note(ledger: Ledger) -> str:
    return str(_seq(ledger, EventKind.RUN_NOTED, "R2"))


def _run_end(ledger: Ledger) -> dict[str, Any]:
    return {"s": _seq(ledger, EventKind.RUN_FAILED, "R3"), "t": TS2}


TAMPERING: dict[str, tuple[str, Any, str, Any]] = {
    "an input edge copied under another name": (
        "INSERT INTO step_run_io VALUES ('S1', 'in', 'data2', :d, 'R1')", {"d": _digest("5")},
        "step_run_io", "S1, in, data2",
    ),
    "an artifact given the second recording": (
        "UPDATE artifacts SET first_run_id = 'R2', first_step_run_id = 'S2', first_seq = :s, "
        "created_at = :t WHERE digest = :a", _first_artifact, "artifacts", _digest("a"),
    ),
    "a resealed artifact given its first blob": (
        "UPDATE artifacts SET blob = :b, first_seq = :s, created_at = :t WHERE digest = :b",
        _resealed,
        "artifacts", _digest("b"),
    ),
    "a source given its second observation": (
        "UPDATE sources SET size = 4, observed_at = :t, seq = :s WHERE run_id = 'R2'",
        _second_source, "sources", "R2, data/in.csv",
    ),
    "an empty error instead of none": (
        "UPDATE step_runs SET error = '' WHERE step_run_id = 'S1'", {}, "step_runs", "S1",
    ),
    "a failed step's output": (
        "INSERT INTO step_run_io VALUES ('S5', 'out', 'output', :d, 'R3')", {"d": _digest("c")},
        "step_run_io", "S5, out, output",
    ),
    "a failed step's metric": (
        "INSERT INTO run_metrics VALUES ('S5', 'acc', 'R3', 'train', 'train.acc', 0.8, 'output')",
        {}, "run_metrics", "S5, acc",
    ),
    "a closed step reopened": (
        "UPDATE step_runs SET status = 'running', ended_at = NULL, error = NULL, "
        "last_seq = first_seq WHERE step_run_id = 'S4'", {}, "step_runs", "S4",
    ),
    "a completed step closed by the run end": (
        "UPDATE step_runs SET status = 'interrupted', ended_at = :t, error = 'boom', "
        "last_seq = :s WHERE step_run_id = 'S6'", _run_end, "step_runs", "S6",
    ),
    "a hit's own metric given the reused value": (
        "UPDATE run_metrics SET value = 0.9, origin = 'output' "
        "WHERE step_run_id = 'S3' AND key = 'auc'", {}, "run_metrics", "S3, auc",
    ),
    "a copied metric deleted": (
        "DELETE FROM run_metrics WHERE step_run_id = 'S3' AND key = 'rows'", {},
        "run_metrics", "S3, rows",
    ),
    "a step run given its closing event as first": (
        "UPDATE step_runs SET first_seq = last_seq WHERE step_run_id = 'S1'", {},
        "step_runs", "S1",
    ),
    "a run given its first name": (
        "UPDATE runs SET name = 'first' WHERE run_id = 'R1'", {}, "runs", "R1",
    ),
    "a run given its start's outcome": (
        "UPDATE runs SET status = 'running', ended_at = NULL, last_seq = first_seq "
        "WHERE run_id = 'R2'", {}, "runs", "R2",
    ),
    "a tag given its first value": (
        "UPDATE run_tags SET value = '1', seq = :s WHERE run_id = 'R1' AND key = 'k'",
        _first_tag, "run_tags", "R1, k",
    ),
    "a removed tag put back": (
        "INSERT INTO run_tags VALUES ('R2', 'gone', 'x', :s)", _gone_tag, "run_tags", "R2, gone",
    ),
    "a note edited": (
        "UPDATE run_notes SET text = 'hullo' WHERE run_id = 'R2'", {}, "run_notes", _note,
    ),
    "a deletion given the second reason": (
        "UPDATE run_deletions SET reason = 'why2', seq = :s WHERE run_id = 'R2'",
        _second_deletion, "run_deletions", "R2",
    ),
    "a text parameter given a number": (
        "UPDATE run_params SET num = 0 WHERE run_id = 'R1' AND name = 'label'", {},
        "run_params", "R1, label",
    ),
    "a number one ulp away": (
        "UPDATE run_metrics SET value = 0.9000000000000001 "
        "WHERE step_run_id = 'S1' AND key = 'auc'", {}, "run_metrics", "S1, auc",
    ),
}  # fmt: skip


def _tamper(ledger: Ledger, case: str) -> tuple[str, str]:
    statement, params, table, key = TAMPERING[case]
    _exec(ledger, statement, **(params(ledger) if callable(params) else params))
    return table, key(ledger) if callable(key) else key


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_an_edit_a_loose_model_would_miss_is_named(metadata_url: str, case: str) -> None:
    ledger = _ledger(metadata_url)
    table, key = _tamper(ledger, case)
    _model_refuses(ledger)
    report = ledger.verify()
    assert report.chain_ok
    assert [(p.table, p.key) for p in report.derived] == [(table, key)]
    assert report == _reference(ledger)
    ledger.close()


def test_the_same_values_stored_again_still_match(metadata_url: str) -> None:
    ledger = _ledger(metadata_url)
    # An integer written into a number column is stored as the column's number (3.0).
    _exec(ledger, "UPDATE run_metrics SET value = 3 WHERE key = 'rows'")
    report = audit._verify_alone(ledger.db, model=True)
    assert report.ok, report
    assert report == _reference(ledger)
    ledger.close()


def test_sources_stored_in_another_order_still_match(tmp_path: Path) -> None:
    ledger = _ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    # The first source row written again: read back, the rows come in another order.
    _exec(ledger, "CREATE TEMP TABLE kept AS SELECT * FROM sources WHERE run_id = 'R1'")
    _exec(ledger, "DELETE FROM sources WHERE run_id = 'R1'")
    _exec(ledger, "INSERT INTO sources SELECT * FROM kept")
    order = [row[0] for row in ledger.db.rows("SELECT seq FROM sources")]
    assert order != sorted(order)
    head = ledger.db.rows("SELECT seq, hash FROM ledger_head")[0]
    part = audit_parallel._check(str(tmp_path / "ledger.db"), head, model=True)  # no fallback
    assert part is not None
    assert part.problems == ()
    report = audit._verify_alone(ledger.db, model=True)
    assert report.ok, report
    assert report == _reference(ledger)
    ledger.close()


SQLITE_TAMPERING = {
    "text stored as bytes": (
        "UPDATE artifacts SET meta = CAST('{}' AS BLOB) WHERE digest = :a", {"a": _digest("a")},
    ),
    "a number stored as text": ("UPDATE step_runs SET seed = 'seven' WHERE step_run_id = 'S1'", {}),
    "a step key stored as a number": (
        "UPDATE step_run_io SET name = 5 WHERE step_run_id = 'S1' AND direction = 'in'", {},
    ),
    "a size stored as a fraction": ("UPDATE sources SET size = 3.5 WHERE run_id = 'R1'", {}),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(SQLITE_TAMPERING))
def test_a_value_of_another_type_is_named_on_sqlite(tmp_path: Path, case: str) -> None:
    ledger = _ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    statement, params = SQLITE_TAMPERING[case]
    _exec(ledger, statement, **params)
    _model_refuses(ledger)
    report = ledger.verify()
    assert report.chain_ok
    assert report.derived
    assert report == _reference(ledger)
    ledger.close()


def test_every_edit_at_once_beside_a_second_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = _ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    edited = {_tamper(ledger, case) for case in TAMPERING}
    monkeypatch.setattr(audit_parallel, "PARALLEL_FROM", 0)
    started = []
    real = audit_parallel.start

    def start(db: Any, *, model: bool = True, share: Any = None) -> audit_parallel.Beside | None:
        started.append(model)
        return real(db, model=model, share=share)

    monkeypatch.setattr(audit_parallel, "start", start)
    report = ledger.verify()
    assert {(p.table, p.key) for p in report.derived} == edited
    # the model saw a difference; the replay ran beside a second process again
    assert started == [True, False]
    assert report == _reference(ledger)
    ledger.close()


def test_an_intact_ledger_beside_a_second_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = _ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    head = ledger.db.rows("SELECT seq, hash FROM ledger_head")[0]
    part = audit_parallel._check(str(tmp_path / "ledger.db"), head, model=True)  # no fallback
    assert part is not None
    assert part.problems == ()
    monkeypatch.setattr(audit_parallel, "PARALLEL_FROM", 0)
    report = ledger.verify()
    assert report.ok
    assert report == _reference(ledger)
    ledger.close()


# Payloads pipetrail does not write, which the replay still projects (SQLite's column
# typing converts them) or rejects: the model gives up, the replay decides.
FORGED: dict[str, tuple[str, str, int, dict[str, Any]]] = {
    "a size that is true": (EventKind.SOURCE_OBSERVED, "R1", 0, {"size": True}),
    "a seed that is text": (EventKind.STEP_COMPLETED, "R2", 0, {"seed": "7"}),
    "a size that is a float": (EventKind.ARTIFACT_RECORDED, "R1", 0, {"size": 9.0}),
    "an input digest that is a number": (EventKind.STEP_COMPLETED, "R1", 0, {"inputs": {"d": 5}}),
    "an artifact with no blob": (EventKind.ARTIFACT_RECORDED, "R1", 0, {"blob": None}),
    # Artifact rows are checked a batch at a time too, a row the first recording keeps
    # out included (the replay binds its values all the same).
    "an artifact role that is a number": (EventKind.ARTIFACT_RECORDED, "R1", 0, {"role": 5}),
    "a second recording's size that is text": (
        EventKind.ARTIFACT_RECORDED, "R2", 0, {"size": "9"},
    ),
    # So are the run tables' rows, those an update changes included.
    "a run seed beyond 64 bits": (EventKind.RUN_STARTED, "R2", 0, {"seed": 2**64}),
    "a run name that is a number": (EventKind.RUN_STARTED, "R1", 0, {"name": 5}),
    "a run renamed with a lone surrogate": (
        EventKind.RUN_NAMED, "R1", 1, {"name": "second\ud800"},
    ),
    "a step that names no node": (EventKind.STEP_STARTED, "R3", 0, {"node_id": None}),
    # Step rows are checked a batch at a time: one bad value among good rows is found.
    "a step log that is a number": (EventKind.STEP_COMPLETED, "R2", 0, {"logs": 5}),
    "a step run of a run that is a number": (EventKind.STEP_STARTED, "R1", 0, {"run_id": 7}),
    "a step node that is a number": (EventKind.STEP_COMPLETED, "R1", 0, {"node_id": 5}),
    "a hit reusing itself": (EventKind.STEP_CACHED, "R3", 0, {"reused_step_run_id": "S3"}),
    "a run end closing a step of another type": (
        EventKind.RUN_FAILED, "R3", 0, {"ended_at": 5},
    ),
    "a source size beyond 64 bits": (EventKind.SOURCE_OBSERVED, "R1", 0, {"size": 2**64}),
    "a source time that is null": (EventKind.SOURCE_OBSERVED, "R2", 0, {"observed_at": None}),
    "a source path that is a list": (EventKind.SOURCE_OBSERVED, "R1", 0, {"path": ["a"]}),
    "a source path with a lone surrogate": (
        EventKind.SOURCE_OBSERVED, "R1", 0, {"path": "data\ud800.csv"},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(FORGED))
def test_a_payload_the_model_does_not_follow_is_left_to_the_replay(
    metadata_url: str, case: str
) -> None:
    import json

    ledger = _ledger(metadata_url)
    kind, run_id, nth, change = FORGED[case]
    seq = _seq(ledger, kind, run_id, nth)
    event = next(e for e in ledger.iter_events() if e.seq == seq)
    payload = {**json.loads(event.payload_text), **change}
    _rewrite(ledger, seq, json.dumps(payload, sort_keys=True, separators=(",", ":")))
    _model_refuses(ledger)
    assert ledger.verify() == _reference(ledger)
    ledger.close()


def test_a_projection_the_model_does_not_follow_is_left_to_the_replay(
    metadata_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipetrail.ledger import audit_model, audit_replica

    ledger = _ledger(metadata_url)
    # As if run.noted and its table were a projection the model had not learnt.
    kinds = audit_replica.MODEL_KINDS - {EventKind.RUN_NOTED}
    monkeypatch.setattr(audit_replica, "MODEL_KINDS", kinds)
    tables = tuple(t for t in audit_model.MODEL_TABLES if t != "run_notes")
    monkeypatch.setattr(audit_model, "MODEL_TABLES", tables)
    _model_refuses(ledger)
    report = ledger.verify()
    assert report.ok, report
    assert report == _reference(ledger)
    ledger.close()


def test_a_check_meanwhile_reads_the_audits_snapshot(metadata_url: str) -> None:
    # On either backend: the check runs once, inside the snapshot the chain was read in
    # (it opens none of its own), also when a difference makes the audit walk twice.
    ledger = _ledger(metadata_url)
    _exec(ledger, "UPDATE artifacts SET role = 'forged' WHERE digest = :d", d=_digest("a"))
    calls = []

    def check(db: Any) -> int:
        calls.append(1)
        return int(db.rows("SELECT seq FROM ledger_head WHERE id = 1")[0][0])

    meanwhile = audit.Meanwhile(check)
    report = ledger.verify(meanwhile=meanwhile)
    assert [p.table for p in report.derived] == ["artifacts"]
    assert (calls, meanwhile.result) == ([1], report.checked)
    ledger.close()


def test_a_number_stored_as_another_number_type_is_refused_beside_a_second_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The number types of the second process's tables are checked by the first one.

    A column edited to no type keeps ``7.0`` as a float where the events give ``7``: the
    values are equal, so only the check of types refuses the model (the replay, which
    compares numbers by value, then finds the ledger intact).
    """
    import re
    import sqlite3

    file = tmp_path / "ledger.db"
    _ledger(f"sqlite:///{file}").close()
    raw = sqlite3.connect(file)
    ddl = raw.execute("SELECT sql FROM sqlite_master WHERE name = 'runs'").fetchone()[0]
    untyped = re.sub(r"\bseed [A-Z]+", "seed BLOB", ddl, count=1)  # BLOB: kept as given
    assert untyped != ddl
    version = raw.execute("PRAGMA schema_version").fetchone()[0]
    raw.execute("PRAGMA writable_schema = ON")
    raw.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'runs'", (untyped,))
    raw.execute(f"PRAGMA schema_version = {version + 1}")
    raw.execute("PRAGMA writable_schema = OFF")
    raw.commit()
    raw.execute("UPDATE runs SET seed = CAST(seed AS REAL)")
    raw.commit()
    assert raw.execute("SELECT DISTINCT typeof(seed) FROM runs").fetchall() == [("real",)]
    raw.close()
    ledger = Ledger.open(f"sqlite:///{file}", actor="tester")
    head = tuple(ledger.db.rows("SELECT seq, hash FROM ledger_head")[0])
    with pytest.raises(Unmodelled):
        audit_parallel._check(str(file), head, model=True)  # it checks the types itself
    part = audit_parallel._check(str(file), head, model=True, typed=False)
    assert part is not None
    assert part.problems == ()  # left to the first process
    monkeypatch.setattr(audit_parallel, "PARALLEL_FROM", 0)
    started = []
    real = audit_parallel.start

    def start(db: Any, *, model: bool = True, share: Any = None) -> audit_parallel.Beside | None:
        started.append(model)
        return real(db, model=model, share=share)

    monkeypatch.setattr(audit_parallel, "start", start)
    report = ledger.verify()
    assert started == [True, False]  # the first process refused the model
    assert report.ok
    assert report == _reference(ledger)
    ledger.close()


def test_stored_rows_compared_a_chunk_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read in chunks of one row, every table still matches, and every edit is refused."""
    from pipetrail.ledger import audit_replica

    monkeypatch.setattr(audit_replica, "_CHUNK", 1)
    ledger = _ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    report = audit._verify_alone(ledger.db, model=True)  # no fallback: it did not raise
    assert report.ok, report
    assert report.derived_rows == _reference(ledger).derived_rows
    _exec(ledger, "CREATE TEMP TABLE kept AS SELECT * FROM sources WHERE run_id = 'R1'")
    _exec(ledger, "DELETE FROM sources WHERE run_id = 'R1'")
    _exec(ledger, "INSERT INTO sources SELECT * FROM kept")  # another order: still the same
    assert audit._verify_alone(ledger.db, model=True).ok
    edited = {_tamper(ledger, case) for case in TAMPERING}
    _model_refuses(ledger)
    assert {(p.table, p.key) for p in ledger.verify().derived} == edited
    ledger.close()


@pytest.mark.parametrize(
    "case", ["a copied metric deleted", "an input edge copied under another name"]
)
def test_a_row_missing_or_extra_at_a_chunks_edge_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    from pipetrail.ledger import audit_replica

    ledger = _ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    table, _ = TAMPERING[case][2:]
    rows = int(ledger.db.rows(f"SELECT COUNT(*) FROM {table}")[0][0])  # noqa: S608
    for chunk in (1, 2, rows - 1, rows, rows + 1):
        monkeypatch.setattr(audit_replica, "_CHUNK", max(1, chunk))
        assert audit._verify_alone(ledger.db, model=True).ok
    _tamper(ledger, case)
    for chunk in (1, 2, rows - 1, rows, rows + 1):
        monkeypatch.setattr(audit_replica, "_CHUNK", max(1, chunk))
        _model_refuses(ledger)
    ledger.close()


def test_the_audit_reads_a_sqlite_ledger_through_a_map_and_restores_the_setting(
    tmp_path: Path,
) -> None:
    ledger = _ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.db.rows("PRAGMA mmap_size=0")

    def mapped(db: Any) -> int:
        return int(db.rows("PRAGMA mmap_size")[0][0])

    meanwhile = audit.Meanwhile(mapped)
    assert ledger.verify(meanwhile=meanwhile).ok
    assert meanwhile.result is not None
    assert meanwhile.result > 0  # read through a map while the audit ran
    assert mapped(ledger.db) == 0  # the connection's own setting afterwards
    ledger.close()
