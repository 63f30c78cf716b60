"""``artifacts`` matched with its events during the walk: read once, and never falsely.

:mod:`pipetrail.ledger.audit_artifacts` writes each stored row back as its event's payload
and compares the bytes, so the events it matches are neither parsed nor modelled, and the
table is not read again. Every event it cannot match, and every later one, goes to the
model, and the table is then compared as before. Each edit below is one the matching
must not let through: the model then refuses, and the report is exactly the one the whole
replay gives. Events pipetrail writes that the matching does not follow (a reseal, a
member the row does not hold, a meta that is not an object) are checked all the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.ledger import EventDraft, EventKind, audit, audit_artifacts, audit_parallel
from pipetrail.ledger.audit_model import TableModel, Unmodelled
from pipetrail.ledger.ledger import Ledger
from tests.contract.test_ledger import _digest, _exec

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


def _artifact(digest: str, n: int, **more: Any) -> EventDraft:
    payload = {"digest": digest, "blob": digest, "serializer": "json", "type_name": "dict",
               "size": 9 + n, "meta": {"format_version": 1, "n": n}, "role": "output",
               "run_id": "R1", "step_run_id": f"S{n}", **more}  # fmt: skip
    return EventDraft(EventKind.ARTIFACT_RECORDED, payload, run_id="R1")


def _ledger(tmp_path: Path, *more: EventDraft) -> Ledger:
    """Six plain artifacts (two appends), an event of another kind between, and ``more``."""
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", actor="tester")
    ledger.append([_artifact(_digest("a"), 1), _artifact(_digest("b"), 2)])
    ledger.append([EventDraft(EventKind.RUN_NOTED, {"run_id": "R1", "text": "hi"}, run_id="R1")])
    ledger.append([_artifact(_digest(c), n) for n, c in enumerate("cdef", start=3)])
    if more:
        ledger.append(list(more))
    return ledger


def _compared(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tables the model reads back from the stored rows after the walk."""
    tables: list[str] = []
    real_in_order, real_compare = TableModel.same_in_order, TableModel.compare

    def same_in_order(self: TableModel, table: str, chunks: Any) -> bool | None:
        tables.append(table)
        return real_in_order(self, table, chunks)

    def compare(self: TableModel, table: str, stored: list[tuple[Any, ...]]) -> bool:
        tables.append(table)
        return real_compare(self, table, stored)

    monkeypatch.setattr(TableModel, "same_in_order", same_in_order)
    monkeypatch.setattr(TableModel, "compare", compare)
    return tables


def _reference(ledger: Ledger) -> audit.LedgerVerifyReport:
    """The report of the whole replay, in one process, without the model."""
    return audit._verify_alone(ledger.db)


@pytest.mark.parametrize("chunk", [1, 2, 5000])
def test_artifacts_matched_during_the_walk_are_not_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(audit_artifacts, "_CHUNK", chunk)
    ledger = _ledger(
        tmp_path,
        _artifact(_digest("7"), 7, meta={}),  # stored as '{}'
        _artifact(_digest("8"), 8, run_id=None, step_run_id=None),  # stored as NULL
    )
    compared = _compared(monkeypatch)
    report = audit._verify_alone(ledger.db, model=True)  # no fallback: it did not raise
    assert report.ok, report
    assert "artifacts" not in compared
    assert "run_notes" in compared
    assert report == _reference(ledger)
    ledger.close()


def test_artifacts_matched_beside_a_second_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = _ledger(tmp_path)
    monkeypatch.setattr(audit_parallel, "PARALLEL_FROM", 0)
    compared = _compared(monkeypatch)
    report = ledger.verify()
    assert report.ok, report
    assert "artifacts" not in compared
    assert report == _reference(ledger)
    ledger.close()


# Events pipetrail writes whose rows the matching does not follow: the model checks them.
UNMATCHED = {
    "a reseal": _artifact(_digest("c"), 3, blob=_digest("9"), resealed_from="k1"),
    "a digest recorded again": _artifact(_digest("a"), 7),
    "a member the row does not hold": _artifact(_digest("7"), 7, note="kept in the event"),
    "no meta": _artifact(_digest("7"), 7, meta=None),
}


@pytest.mark.parametrize("case", sorted(UNMATCHED))
def test_an_event_not_matched_is_left_to_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    ledger = _ledger(tmp_path, UNMATCHED[case], _artifact(_digest("8"), 8))
    compared = _compared(monkeypatch)
    report = audit._verify_alone(ledger.db, model=True)
    assert report.ok, report
    assert compared.count("artifacts") == 1
    assert report == _reference(ledger) == ledger.verify()
    ledger.close()


def _seq_of(ledger: Ledger, digest: str) -> int:
    return next(e.seq for e in ledger.iter_events() if e.payload.get("digest") == digest)


# statement, parameters (or a function of the ledger giving them), the key named
TAMPERING: dict[str, tuple[str, Any, str]] = {
    "a size edited": ("UPDATE artifacts SET size = 99 WHERE digest = :d", {"d": _digest("c")},
                      _digest("c")),
    "a meta edited": ("UPDATE artifacts SET meta = :m WHERE digest = :d",
                      {"d": _digest("c"), "m": '{"format_version":2,"n":3}'}, _digest("c")),
    "a meta written with spaces": ("UPDATE artifacts SET meta = :m WHERE digest = :d",
                                   {"d": _digest("c"), "m": '{"format_version": 1, "n": 3}'},
                                   _digest("c")),
    "a first sequence number edited": (
        "UPDATE artifacts SET first_seq = first_seq + 1 WHERE digest = :d", {"d": _digest("b")},
        _digest("b"),
    ),
    "a time edited": ("UPDATE artifacts SET created_at = 'then' WHERE digest = :d",
                      {"d": _digest("a")}, _digest("a")),
    "a run id removed": ("UPDATE artifacts SET first_run_id = NULL WHERE digest = :d",
                         {"d": _digest("f")}, _digest("f")),
    "the last row deleted": ("DELETE FROM artifacts WHERE digest = :d", {"d": _digest("f")},
                             _digest("f")),
    "the first row deleted": ("DELETE FROM artifacts WHERE digest = :d", {"d": _digest("a")},
                              _digest("a")),
    "a row added": ("INSERT INTO artifacts SELECT :x, blob, serializer, type_name, size, meta, "
                    "role, first_run_id, first_step_run_id, created_at, first_seq FROM artifacts "
                    "WHERE digest = :d", {"d": _digest("f"), "x": _digest("9")}, _digest("9")),
    "a size stored as text": ("UPDATE artifacts SET size = 'thirteen' WHERE digest = :d",
                              {"d": _digest("d")}, _digest("d")),
    "text stored as bytes": ("UPDATE artifacts SET role = CAST('output' AS BLOB) "
                             "WHERE digest = :d", {"d": _digest("e")}, _digest("e")),
}  # fmt: skip


@pytest.mark.parametrize("chunk", [1, 2, 5000])
@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_an_edited_artifact_row_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, chunk: int
) -> None:
    monkeypatch.setattr(audit_artifacts, "_CHUNK", chunk)
    ledger = _ledger(tmp_path)
    statement, params, key = TAMPERING[case]
    _exec(ledger, statement, **(params(ledger) if callable(params) else params))
    with pytest.raises(Unmodelled):
        audit._verify_alone(ledger.db, model=True)
    report = ledger.verify()
    assert report.chain_ok
    assert [(p.table, p.key) for p in report.derived] == [("artifacts", key)]
    assert report == _reference(ledger)
    ledger.close()


def test_a_null_meta_stored_for_an_event_without_one_is_named(tmp_path: Path) -> None:
    """The payload's ``"meta":null`` is the stored text written back, but not its row."""
    ledger = _ledger(tmp_path, _artifact(_digest("7"), 7, meta=None))
    _exec(ledger, "UPDATE artifacts SET meta = 'null' WHERE digest = :d", d=_digest("7"))
    with pytest.raises(Unmodelled):
        audit._verify_alone(ledger.db, model=True)
    report = ledger.verify()
    assert [(p.table, p.key) for p in report.derived] == [("artifacts", _digest("7"))]
    assert report == _reference(ledger)
    ledger.close()


def test_rows_stored_in_another_order_still_match(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = _ledger(tmp_path)
    _exec(ledger, "CREATE TEMP TABLE kept AS SELECT * FROM artifacts WHERE digest = :d",
          d=_digest("b"))  # fmt: skip
    _exec(ledger, "DELETE FROM artifacts WHERE digest = :d", d=_digest("b"))
    _exec(ledger, "INSERT INTO artifacts SELECT * FROM kept")
    compared = _compared(monkeypatch)
    report = audit._verify_alone(ledger.db, model=True)
    assert report.ok, report
    assert "artifacts" in compared  # by key, once the order no longer matched
    assert report == _reference(ledger)
    ledger.close()


@pytest.mark.parametrize(("fetch", "step"), [(1, 500), (3, 500), (3, 3), (5, 2)])
def test_the_walk_reads_a_sqlite_ledger_a_few_rows_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fetch: int, step: int
) -> None:
    """Fetched rows are checked a step at a time, or all at once when they fit one step."""
    monkeypatch.setattr(audit, "_SQLITE_FETCH", fetch)
    monkeypatch.setattr(audit, "_STEP", step)
    ledger = _ledger(tmp_path)
    reference = _reference(ledger)
    compared = _compared(monkeypatch)
    report = audit._verify_alone(ledger.db, model=True)
    assert report == reference
    assert report.ok, report
    assert "artifacts" not in compared
    late = _seq_of(ledger, _digest("e"))
    _exec(ledger, "UPDATE events SET actor = 'mallory' WHERE seq = :s", s=late)
    report = ledger.verify()
    assert (report.first_bad_seq, report.checked) == (late, late - 1)
    ledger.close()


def test_an_artifact_event_rewritten_and_chained_again_is_named(tmp_path: Path) -> None:
    """The chain holds (every hash recomputed), so only the stored row can tell."""
    from tests.integration.test_audit_parallel import _rewrite

    ledger = _ledger(tmp_path)
    seq = _seq_of(ledger, _digest("d"))
    event = next(e for e in ledger.iter_events() if e.seq == seq)
    _rewrite(ledger, seq, event.payload_text.replace('"size":13', '"size":14'))
    with pytest.raises(Unmodelled):
        audit._verify_alone(ledger.db, model=True)
    report = ledger.verify()
    assert report.chain_ok
    assert [(p.table, p.key) for p in report.derived] == [("artifacts", _digest("d"))]
    assert report == _reference(ledger)
    ledger.close()


def _max_queries(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Whether each look for the highest event the derived rows name read ``artifacts``."""
    asked: list[bool] = []
    real = audit._max_projection_seq

    def spied(db: Any, *, artifacts: bool = True) -> int:
        asked.append(artifacts)
        return real(db, artifacts=artifacts)

    monkeypatch.setattr(audit, "_max_projection_seq", spied)
    return asked


def test_artifacts_all_matched_are_not_read_for_the_highest_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = _ledger(tmp_path)
    reference = _reference(ledger)
    asked = _max_queries(monkeypatch)
    report = audit._verify_alone(ledger.db, model=True)
    assert report == reference
    assert report.ok, report
    assert asked == [False]  # every row matched an event the walk verified
    ledger.close()


@pytest.mark.parametrize("beyond", [1, 5])
def test_an_artifact_row_naming_an_event_past_the_last_is_reported_as_ever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, beyond: int
) -> None:
    """Its row matches no event, so the table is read for its highest event as before."""
    ledger = _ledger(tmp_path)
    last = max(e.seq for e in ledger.iter_events())
    _exec(ledger, "UPDATE artifacts SET first_seq = :s WHERE digest = :d", s=last + beyond,
          d=_digest("f"))  # fmt: skip
    reference = _reference(ledger)
    assert reference.first_bad_seq == last + 1
    assert f"projections reference event {last + beyond} " in reference.reason
    asked = _max_queries(monkeypatch)
    assert audit._verify_alone(ledger.db, model=True) == reference
    assert asked == [True]
    assert ledger.verify() == reference
    monkeypatch.setattr(audit_parallel, "PARALLEL_FROM", 0)
    assert ledger.verify() == reference  # with the second process
    ledger.close()


def _artifact_rows(ledger: Ledger) -> list[tuple[Any, ...]]:
    """The verified artifact events, as the walk hands them to the matching."""
    rows = ledger.db.rows(audit._ALL_EVENTS)
    return [row for row in rows if row[3] == audit_artifacts.ARTIFACT]


@pytest.mark.parametrize("chunk", [1, 2, 5000])
def test_matched_rows_are_handed_to_the_model_only_when_the_matching_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    """While it matches, only digests are kept; an early end reads the rows matched again."""
    monkeypatch.setattr(audit_artifacts, "_CHUNK", chunk)
    ledger = _ledger(tmp_path)
    stored = ledger.db.rows("SELECT * FROM artifacts")
    _exec(ledger, "UPDATE artifacts SET size = 99 WHERE digest = :d", d=_digest("e"))
    events = _artifact_rows(ledger)
    replica = audit.Replica(ledger.db, model=True)
    try:
        with ledger.db.snapshot():
            take = replica.match_artifacts(ledger.db)
            assert take is not None
            assert replica.match is not None
            assert replica.model is not None
            assert [take(event) for event in events[:4]] == [True] * 4
            assert replica.match.count == 4
            assert replica.model.artifacts == {}  # nothing held while the matching goes on
            assert take(events[4]) is False  # the edited row: the model takes it from here
            assert replica.model.artifacts == {row[0]: row for row in stored[:4]}
            assert take(events[5]) is False
    finally:
        replica.close()
    ledger.close()


def test_a_row_left_over_hands_the_rows_matched_to_the_model(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    stored = ledger.db.rows("SELECT * FROM artifacts")
    replica = audit.Replica(ledger.db, model=True)
    try:
        with ledger.db.snapshot():
            take = replica.match_artifacts(ledger.db)
            assert take is not None
            assert replica.match is not None
            assert replica.model is not None
            assert all(take(event) for event in _artifact_rows(ledger)[:5])
            assert replica.match.complete() is False  # the sixth row was never matched
            assert replica.model.artifacts == {row[0]: row for row in stored[:5]}
    finally:
        replica.close()
    ledger.close()


def test_a_table_wholly_matched_is_not_compared_again(tmp_path: Path) -> None:
    """The model holds none of the rows matched: asked twice, the answer stays the same."""
    ledger = _ledger(tmp_path)
    replica = audit.Replica(ledger.db, model=True)
    try:
        with ledger.db.snapshot():
            take = replica.match_artifacts(ledger.db)
            assert take is not None
            assert replica.match is not None
            assert all(take(event) for event in _artifact_rows(ledger))
            assert replica.match.complete() is True
            assert replica.match.complete() is True
            assert replica.match.count == 6
            assert replica.compare(ledger.db, (0, ""), ["artifacts"]) == (6, [])
            assert replica.compare(ledger.db, (0, ""), ["artifacts"]) == (6, [])
    finally:
        replica.close()
    ledger.close()
