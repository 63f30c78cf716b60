"""``audit verify`` with the step and run tables replayed in a second process: the same report.

:mod:`pipetrail.ledger.audit_parallel` splits the replay of a large SQLite ledger in two;
here the size threshold is lowered so that small ledgers take that path, and every
report is compared with the one a single process gives on the same ledger.
"""

from __future__ import annotations

import json
import multiprocessing
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.ledger import EventDraft, EventKind, audit, audit_parallel
from pipetrail.ledger.events import GENESIS_HASH, event_hash
from pipetrail.ledger.ledger import Ledger
from tests.contract.test_ledger import TAMPERING, _append_runs, _digest, _exec, _run_drafts

if TYPE_CHECKING:
    from pathlib import Path

    from pipetrail.ledger.audit import LedgerVerifyReport

TS = "2026-01-01T00:00:00.000000Z"


@pytest.fixture
def parts(monkeypatch: pytest.MonkeyPatch) -> list[audit_parallel.Part | None]:
    """Every answer of a second process (the threshold lowered so that one starts)."""
    monkeypatch.setattr(audit_parallel, "PARALLEL_FROM", 0)
    found: list[audit_parallel.Part | None] = []
    real = audit_parallel.Beside.result

    def result(self: audit_parallel.Beside) -> audit_parallel.Part | None:
        part = real(self)
        found.append(part)
        return part

    monkeypatch.setattr(audit_parallel.Beside, "result", result)
    return found


def _one_process(ledger: Ledger) -> LedgerVerifyReport:
    before = audit_parallel.PARALLEL_FROM
    audit_parallel.PARALLEL_FROM = 1 << 62
    try:
        return ledger.verify()
    finally:
        audit_parallel.PARALLEL_FROM = before


def _same(report: LedgerVerifyReport, ledger: Ledger) -> None:
    alone = _one_process(ledger)
    assert report == alone


def _ledger(tmp_path: Path) -> Ledger:
    """Runs of every shape the step tables see: a hit copying metrics, a failed run."""
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", actor="tester")
    first = _run_drafts("R1", step_run_id="S1", output=_digest("a"), cache_key=_digest("1"))
    first[4].payload["output_metrics"] = {"auc": 0.9, "rows": 3}
    ledger.append(first)
    ledger.append(_run_drafts("R2", step_run_id="S2", output=_digest("b"), cache_key=_digest("2")))
    step = {"run_id": "R3", "node_id": "train", "step": "train", "pipeline": "p",
            "started_at": TS}  # fmt: skip
    ledger.append(
        [
            _run_drafts("R3", step_run_id="S3", output=_digest("a"), cache_key=_digest("1"))[0],
            EventDraft(
                EventKind.STEP_CACHED,
                {
                    **step,
                    "step_run_id": "S3",
                    "decision": "hit",
                    "reused_step_run_id": "S1",
                    "cache_key": _digest("1"),
                    "outputs": {"output": _digest("a")},
                    "inputs": {"data": _digest("5")},
                    "ended_at": TS,
                    "metrics": {"loss": {"last": 0.5}},
                },
                run_id="R3",
            ),
            EventDraft(EventKind.STEP_STARTED, {**step, "step_run_id": "S4"}, run_id="R3"),
            EventDraft(EventKind.RUN_TAGGED, {"run_id": "R3", "tags": {"k": "v"}}, run_id="R3"),
            EventDraft(
                EventKind.RUN_FAILED,
                {"run_id": "R3", "ended_at": TS, "error": "boom", "closed_steps": {"S4": "failed"}},
                run_id="R3",
            ),
        ]
    )
    return ledger


def test_an_intact_ledger_verifies_as_in_one_process(
    tmp_path: Path, parts: list[audit_parallel.Part | None]
) -> None:
    ledger = _ledger(tmp_path)
    report = ledger.verify()
    assert report.ok, report
    assert len(parts) == 1
    assert parts[0] is not None
    # step runs; in and out of S1-S3; metrics of S1 and S3; sources of R1 and R2; runs
    # R1-R3, their parameter and R3's tag
    assert parts[0].rows == 4 + 6 + 5 + 2 + 3 + 3 + 1
    rows = ledger.db.rows("SELECT COUNT(*) FROM run_metrics WHERE step_run_id = 'S3'")
    assert rows == [(3,)]  # the hit's own loss, and auc and rows copied from S1
    _same(report, ledger)
    ledger.close()


STEP_TAMPERING: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "copied metric": (
        "UPDATE run_metrics SET value = 0.99 WHERE step_run_id = 'S3' AND key = 'auc'", {},
        "run_metrics", "S3, auc",
    ),
    "closed step": (
        "UPDATE step_runs SET status = 'completed' WHERE step_run_id = 'S4'", {},
        "step_runs", "S4",
    ),
    "extra edge": (
        "INSERT INTO step_run_io VALUES ('S4', 'out', 'x', :d, 'R3')", {"d": _digest("9")},
        "step_run_io", "S4, out, x",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(TAMPERING) + sorted(STEP_TAMPERING))
def test_an_edited_row_is_named_as_in_one_process(
    tmp_path: Path, parts: list[audit_parallel.Part | None], case: str
) -> None:
    ledger = _ledger(tmp_path)
    if case in TAMPERING:
        statement, params, table, key, _ = TAMPERING[case]
    else:
        statement, params, table, key = STEP_TAMPERING[case]
    _exec(ledger, statement, **params)
    report = ledger.verify()
    assert parts
    assert parts[0] is not None
    assert report.chain_ok
    assert [(p.table, p.key) for p in report.derived] == [(table, key)]
    _same(report, ledger)
    ledger.close()


def test_several_edits_are_named_in_table_order(
    tmp_path: Path, parts: list[audit_parallel.Part | None]
) -> None:
    ledger = _ledger(tmp_path)
    for statement, params, _, _ in STEP_TAMPERING.values():
        _exec(ledger, statement, **params)
    _exec(ledger, "UPDATE runs SET status = 'failed' WHERE run_id = 'R1'")
    _exec(ledger, "DELETE FROM sources WHERE run_id = 'R2'")
    report = ledger.verify()
    assert [p.table for p in report.derived] == [
        "runs", "step_runs", "step_run_io", "sources", "run_metrics",
    ]  # fmt: skip
    _same(report, ledger)
    ledger.close()


def _rewrite(ledger: Ledger, seq: int, payload: str) -> None:
    """Give event ``seq`` another payload text and re-hash the chain from it on."""
    events = [e for e in ledger.iter_events() if e.seq >= seq]
    prev = next(e.prev_hash for e in events if e.seq == seq)
    for ev in events:
        text = payload if ev.seq == seq else ev.payload_text
        digest = event_hash(
            seq=ev.seq, ts=ev.ts, actor=ev.actor, kind=ev.kind, run_id=ev.run_id,
            payload_text=text, prev_hash=prev,
        )  # fmt: skip
        _exec(
            ledger,
            "UPDATE events SET payload = :p, prev_hash = :v, hash = :h WHERE seq = :s",
            p=text, v=prev, h=digest, s=ev.seq,
        )  # fmt: skip
        prev = digest
    _exec(ledger, "UPDATE ledger_head SET hash = :h WHERE id = 1", h=prev)


def _seq_of(ledger: Ledger, kind: str, run_id: str) -> int:
    return next(e.seq for e in ledger.iter_events() if e.kind == kind and e.run_id == run_id)


@pytest.mark.parametrize(
    ("kind", "payload", "reason"),
    [
        (EventKind.STEP_COMPLETED, "[1]", "its payload is not a JSON object"),
        (EventKind.STEP_STARTED, '{"run_id":"R2"}', "payload cannot be projected"),
        (EventKind.ARTIFACT_RECORDED, "7", "its payload is not a JSON object"),
        (EventKind.SOURCE_OBSERVED, '{"run_id":"R2"}', "payload cannot be projected"),
        (EventKind.RUN_STARTED, '{"run_id":', "its payload is not a JSON object"),
        (EventKind.RUN_COMPLETED, '["R2"]', "its payload is not a JSON object"),
    ],
)
def test_a_forged_payload_is_named_as_in_one_process(
    tmp_path: Path,
    parts: list[audit_parallel.Part | None],
    kind: EventKind,
    payload: str,
    reason: str,
) -> None:
    ledger = _ledger(tmp_path)
    seq = _seq_of(ledger, kind, "R2")
    _rewrite(ledger, seq, payload)
    report = ledger.verify()
    assert parts
    assert parts[0] is not None
    assert report.first_bad_seq == seq
    # A payload that is no object stops the walk; one the replay rejects does not.
    assert report.checked == (seq - 1 if "object" in reason else 17)
    assert reason in report.reason
    _same(report, ledger)
    ledger.close()


# A step's start that is not what its closing event says (the second process reads a
# start off its closing event where the start's text is exactly the same members').
_START = {"node_id": "train", "pipeline": "p", "run_id": "R2", "seed": 7, "started_at": TS,
          "step": "train", "step_run_id": "S2"}  # fmt: skip


def _text(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"))


STARTS: dict[str, str] = {
    "a run that is a number": _text({**_START, "run_id": 7}),
    "another seed": _text({**_START, "seed": 8}),
    "the same members spaced out": json.dumps(_START, sort_keys=True),
    "a member more": _text({**_START, "extra": 1}),
    "no node": _text({k: v for k, v in _START.items() if k != "node_id"}),
    "not an object": "[7]",
}


def test_starts_lacking_a_member_are_refused_as_in_one_process(
    tmp_path: Path, parts: list[audit_parallel.Part | None]
) -> None:
    # Both of R1's and R2's starts lack the node (so do their ends): the second start is
    # the same members as its end, yet its row is still built, and refused.
    ledger = _ledger(tmp_path)
    for run in ("R1", "R2"):
        for kind in (EventKind.STEP_STARTED, EventKind.STEP_COMPLETED):
            seq = _seq_of(ledger, kind, run)
            event = next(e for e in ledger.iter_events() if e.seq == seq)
            payload = json.loads(event.payload_text)
            del payload["node_id"]
            _rewrite(ledger, seq, _text(payload))
    report = ledger.verify()
    assert parts
    assert parts[0] is not None
    assert report.first_bad_seq == _seq_of(ledger, EventKind.STEP_STARTED, "R1")
    assert "KeyError: 'node_id'" in report.reason
    _same(report, ledger)
    ledger.close()


@pytest.mark.parametrize("case", sorted(STARTS))
def test_a_start_unlike_its_closing_event_is_checked_as_in_one_process(
    tmp_path: Path, parts: list[audit_parallel.Part | None], case: str
) -> None:
    ledger = _ledger(tmp_path)
    seq = _seq_of(ledger, EventKind.STEP_STARTED, "R2")
    _rewrite(ledger, seq, STARTS[case])
    report = ledger.verify()
    assert parts
    assert parts[0] is not None
    if case in ("no node", "not an object"):
        assert report.first_bad_seq == seq
        assert ("projected" in report.reason) is (case == "no node")
    else:  # the rewritten hashes' tree nodes differ, nothing else
        assert [p.table for p in report.derived] == ["merkle_nodes"]
    _same(report, ledger)
    ledger.close()


# A run's start rewritten (its chain re-hashed): the second process builds the rows of
# ``runs`` and ``run_params`` as values (projection_rows.run_values); each report must be
# the one a single process gives.
RUN_STARTS: dict[str, Any] = {
    "parameters none": {"params": None},
    "parameters empty": {"params": {}},
    "parameters a list": {"params": [1]},
    "parameters text": {"params": "lr"},
    "parameters of every type": {
        "params": {"f": 2.0, "b": True, "n": None, "d": {"y": 1, "x": [2]}}
    },
    "a parameter beyond 64 bits": {"params": {"big": 2**70}},
    "tags": {"tags": {"k": "v"}},
    "tags not an object": {"tags": ["k"]},
    "git": {"git": {"commit": "abc", "dirty": True}},
    "a name and a purpose": {"name": "first", "purpose": "reproduce", "steps_total": 3},
    "an owner that is a number": {"owner": 5},
    "a seed that is text": {"seed": "7"},
    "no owner": {"owner": None},
    "an extra member": {"extra": [1, "é"]},
    "keys not sorted": "unsorted",
}


@pytest.mark.parametrize("case", sorted(RUN_STARTS))
def test_a_rewritten_run_start_is_checked_as_in_one_process(
    tmp_path: Path, parts: list[audit_parallel.Part | None], case: str
) -> None:
    ledger = _ledger(tmp_path)
    seq = _seq_of(ledger, EventKind.RUN_STARTED, "R2")
    event = next(e for e in ledger.iter_events() if e.seq == seq)
    payload = json.loads(event.payload_text)
    change = RUN_STARTS[case]
    if change == "unsorted":
        text = json.dumps(dict(reversed(payload.items())), separators=(",", ":"))
    else:
        payload.update(change)
        if case == "no owner":
            del payload["owner"]
        text = _text(payload)
    _rewrite(ledger, seq, text)
    report = ledger.verify()
    assert parts
    assert parts[0] is not None
    _same(report, ledger)
    ledger.close()


def test_an_edited_run_row_of_a_run_with_parameters_is_named_as_in_one_process(
    tmp_path: Path, parts: list[audit_parallel.Part | None]
) -> None:
    ledger = _ledger(tmp_path)
    _exec(ledger, "UPDATE run_params SET num = 0.2 WHERE run_id = 'R2'")
    _exec(ledger, "UPDATE runs SET record = :r WHERE run_id = 'R1'", r='{"x":1}')
    _exec(ledger, "UPDATE runs SET steps_total = steps_total + 1 WHERE run_id = 'R3'")
    report = ledger.verify()
    assert parts
    assert parts[0] is not None
    assert [(p.table, p.key) for p in report.derived] == [
        ("runs", "R1"), ("runs", "R3"), ("run_params", "R2, lr"),
    ]  # fmt: skip
    _same(report, ledger)
    ledger.close()


def test_a_forged_step_payload_before_a_broken_link_is_named_first(
    tmp_path: Path, parts: list[audit_parallel.Part | None]
) -> None:
    # The second process finds step payload R1 not an object; the first process finds a
    # broken link later (R2's artifact edited): the lower sequence number is the report.
    ledger = _ledger(tmp_path)
    early = _seq_of(ledger, EventKind.STEP_COMPLETED, "R1")
    _rewrite(ledger, early, "[]")
    late = _seq_of(ledger, EventKind.ARTIFACT_RECORDED, "R2")
    _exec(ledger, "UPDATE events SET actor = 'mallory' WHERE seq = :s", s=late)
    report = ledger.verify()
    assert (report.first_bad_seq, report.checked) == (early, early - 1)
    _same(report, ledger)
    ledger.close()


def test_a_second_process_that_sees_another_head_is_not_trusted(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    head = ledger.db.rows("SELECT seq, hash FROM ledger_head")[0]
    file = str(tmp_path / "ledger.db")
    part = audit_parallel.replay_beside(file, (int(head[0]), str(head[1])))
    assert part is not None
    assert part.rows == 24
    assert part.problems == ()
    assert audit_parallel.replay_beside(file, (int(head[0]) - 1, str(head[1]))) is None
    assert audit_parallel.replay_beside(file, (int(head[0]), GENESIS_HASH)) is None
    ledger.close()


def test_without_an_answer_one_process_checks_it_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_parallel, "PARALLEL_FROM", 0)
    monkeypatch.setattr(audit_parallel, "_RUN", "import sys; sys.exit(3)")
    ledger = _ledger(tmp_path)
    _exec(ledger, "UPDATE step_runs SET status = 'completed' WHERE step_run_id = 'S4'")
    report = ledger.verify()
    assert [(p.table, p.key) for p in report.derived] == [("step_runs", "S4")]
    _same(report, ledger)
    ledger.close()


def test_verify_reads_one_snapshot_while_others_append(
    tmp_path: Path, parts: list[audit_parallel.Part | None]
) -> None:
    ledger = _ledger(tmp_path)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    writer = multiprocessing.get_context("spawn").Process(target=_append_runs, args=(url, 40))
    writer.start()
    reports = []
    while writer.is_alive() or not reports:
        reports.append(ledger.verify())
    writer.join(120)
    assert writer.exitcode == 0
    assert all(r.ok for r in reports), next(r for r in reports if not r.ok)
    # A second process that saw a later head was not trusted (the check ran in one).
    final = ledger.verify()
    assert final.ok
    assert parts[-1] is not None
    ledger.close()


def _counting() -> tuple[audit.Meanwhile[int], list[int]]:
    calls: list[int] = []

    def check(db: Any) -> int:
        calls.append(1)
        # Read in the audit's own snapshot: the events the walk verified.
        return int(db.rows("SELECT COUNT(*) FROM events")[0][0])

    return audit.Meanwhile(check), calls


def test_a_check_meanwhile_runs_once_beside_the_second_process(
    tmp_path: Path, parts: list[audit_parallel.Part | None]
) -> None:
    ledger = _ledger(tmp_path)
    meanwhile, calls = _counting()
    report = ledger.verify(meanwhile=meanwhile)
    assert report.ok
    assert parts
    assert parts[0] is not None
    assert (calls, meanwhile.result) == ([1], report.checked)
    # A row of this process's tables edited: its model refuses, everything is walked
    # again (beside a second process again); the check still runs once.
    _exec(ledger, "UPDATE artifacts SET role = 'forged' WHERE digest = :d", d=_digest("b"))
    meanwhile, calls = _counting()
    report = ledger.verify(meanwhile=meanwhile)
    assert [(p.table, p.key) for p in report.derived] == [("artifacts", _digest("b"))]
    assert len(parts) == 3  # the model's walk, then the replay's
    assert (calls, meanwhile.result) == ([1], report.checked)
    ledger.close()


def test_a_check_meanwhile_does_not_run_on_a_broken_chain(
    tmp_path: Path, parts: list[audit_parallel.Part | None]
) -> None:
    ledger = _ledger(tmp_path)
    _exec(ledger, "UPDATE events SET actor = 'mallory' WHERE seq = 3")
    meanwhile, calls = _counting()
    report = ledger.verify(meanwhile=meanwhile)
    assert report.first_bad_seq == 3
    assert (calls, meanwhile.result, meanwhile.called) == ([], None, False)
    # One process (a small ledger): the same.
    report = _one_process_with(ledger, meanwhile)
    assert report.first_bad_seq == 3
    assert calls == []
    ledger.close()


def test_a_check_meanwhile_runs_in_one_process_too(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    meanwhile, calls = _counting()
    report = _one_process_with(ledger, meanwhile)
    assert report.ok
    assert (calls, meanwhile.result) == ([1], report.checked)
    ledger.close()


def _one_process_with(ledger: Ledger, meanwhile: audit.Meanwhile[int]) -> LedgerVerifyReport:
    before = audit_parallel.PARALLEL_FROM
    audit_parallel.PARALLEL_FROM = 1 << 62
    try:
        return ledger.verify(meanwhile=meanwhile)
    finally:
        audit_parallel.PARALLEL_FROM = before


def test_the_first_process_frees_its_model_before_the_second_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipetrail.ledger.audit_model import TableModel

    monkeypatch.setattr(audit_parallel, "PARALLEL_FROM", 0)
    order: list[str] = []
    result, release = audit_parallel.Beside.result, TableModel.release

    def answer(self: audit_parallel.Beside) -> audit_parallel.Part | None:
        order.append("answer")
        return result(self)

    def freed(self: TableModel) -> None:
        order.append("released")
        release(self)

    monkeypatch.setattr(audit_parallel.Beside, "result", answer)
    monkeypatch.setattr(TableModel, "release", freed)
    ledger = _ledger(tmp_path)
    report = ledger.verify()
    assert report.ok
    assert order == ["released", "answer"]
    _same(report, ledger)
    ledger.close()


@pytest.mark.parametrize("model", [True, False])
def test_only_the_model_is_given_starts_read_off_their_closing_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: bool
) -> None:
    from pipetrail.ledger.audit_model import ImpliedStart, TableModel
    from pipetrail.ledger.audit_replica import Replica

    ledger = _ledger(tmp_path)
    given: list[type] = []
    real, real_add = Replica.replay, TableModel.add

    def replay(self: Replica, good: Any, *, plain: bool) -> Any:
        given.extend(type(payload) for row, payload in good if row[3] == "step.started")
        return real(self, good, plain=plain)

    def add(self: TableModel, events: Any, encode: Any, *, plain: bool) -> None:
        given.extend(type(payload) for row, payload in events if row[3] == "step.started")
        real_add(self, events, encode, plain=plain)

    # The replay's events go through Replica.replay; the model's straight to the model.
    monkeypatch.setattr(Replica, "replay", replay)
    monkeypatch.setattr(TableModel, "add", add)
    head = ledger.db.rows("SELECT seq, hash FROM ledger_head")[0]
    part = audit_parallel._check(str(tmp_path / "ledger.db"), head, model=model)
    assert part is not None
    assert part.problems == ()
    # R1's start is parsed (the first), R2's is read off its end, S4's is followed by no
    # end of its own; the replay parses every one.
    assert given == ([dict, ImpliedStart, dict] if model else [dict, dict, dict])
    ledger.close()


# The second process compares the rows of a step run once it ended, and of a run once it
# ended, as it reads the events (audit_model.STREAMED); later events may still change a
# run's row, or touch rows of the other tables. Here the events go to the model a few at
# a time, so that every row is compared (and dropped) before the later events come.
def _later(ledger: Ledger) -> None:
    """Events after the runs ended: renames (R1 twice), a tag, a note, a deletion, an end."""
    drafts = [
        (EventKind.RUN_NAMED, {"run_id": "R1", "name": "first"}),
        (EventKind.RUN_TAGGED, {"run_id": "R2", "tags": {"k": "v"}}),
        (EventKind.RUN_NOTED, {"run_id": "R1", "text": "a note"}),
        (EventKind.RUN_DELETED, {"run_id": "R2", "reason": "old"}),
        (EventKind.RUN_NAMED, {"run_id": "R1", "name": "second"}),
        (EventKind.RUN_CRASHED, {"run_id": "R2", "ended_at": TS, "error": "again"}),
        (EventKind.RUN_NAMED, {"run_id": "R9", "name": "no such run"}),
    ]
    for kind, payload in drafts:
        ledger.append([EventDraft(kind, payload, run_id=str(payload["run_id"]))])
    ledger.append(_run_drafts("R4", step_run_id="S5", output=_digest("c"), cache_key=_digest("4")))


def _beside(
    tmp_path: Path, ledger: Ledger, *, model: bool = True
) -> tuple[Any, list[Any], list[str]]:
    """The second process's answer, in this process: (it, its models, how each try ended).

    A try is named by what it was (``stream``, ``model``, ``replay``) and how it ended
    (``answered``, or the exception's name).
    """
    head = ledger.db.rows("SELECT seq, hash FROM ledger_head")[0]
    kept: list[Any] = []
    tries: list[str] = []
    real = audit_parallel._check

    def check(*args: Any, **kwargs: Any) -> Any:
        name = ("stream" if kwargs.get("stream") else "model") if kwargs["model"] else "replay"
        try:
            found = real(*args, **kwargs)
        except Exception as exc:
            tries.append(f"{name} {type(exc).__name__}")
            raise
        tries.append(f"{name} answered")
        return found

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(audit_parallel, "_check", check)
        part = audit_parallel.replay_beside(
            str(tmp_path / "ledger.db"), (int(head[0]), str(head[1])), model=model, keep=kept
        )
    return part, kept, tries


@pytest.mark.parametrize("step", [1, 2, 3, 500])
def test_rows_changed_after_their_run_ended_are_compared_as_they_end_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: int
) -> None:
    monkeypatch.setattr(audit_parallel, "_STEP", step)
    ledger = _ledger(tmp_path)
    _later(ledger)
    part, kept, tries = _beside(tmp_path, ledger)
    replayed, _, _ = _beside(tmp_path, ledger, model=False)
    assert part is not None
    assert replayed is not None
    assert (part.rows, part.problems) == (replayed.rows, ())
    # The streaming model answered: every row compared as the events went but the ones
    # a later event changed.
    assert tries == ["stream answered"]
    assert kept[0].streams("runs")
    assert sum(kept[0].done.values()) > (0 if step == 500 else 10)
    ledger.close()


LATER_TAMPERING: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "a renamed run's name": ("UPDATE runs SET name = 'first' WHERE run_id = 'R1'", {},
                             "runs", "R1"),
    "an ended run's end": ("UPDATE runs SET error = 'boom' WHERE run_id = 'R2'", {},
                           "runs", "R2"),
    "a parameter": ("UPDATE run_params SET value = '0.2' WHERE run_id = 'R4'", {},
                    "run_params", "R4, lr"),
    "a parameter more": ("INSERT INTO run_params VALUES ('R4', 'x', '1', 1.0)", {},
                         "run_params", "R4, x"),
    "a step run gone": ("DELETE FROM step_runs WHERE step_run_id = 'S5'", {},
                        "step_runs", "S5"),
    "an edge gone": ("DELETE FROM step_run_io WHERE step_run_id = 'S1' AND direction = 'out'",
                     {}, "step_run_io", "S1, out, output"),
    "a copied metric's source": (
        "UPDATE run_metrics SET value = 0.1 WHERE step_run_id = 'S1' AND key = 'auc'", {},
        "run_metrics", "S1, auc",
    ),
    # A note's and a deletion's rows hold their event's time and actor, which the second
    # process reads for those events alone.
    "a note's author": ("UPDATE run_notes SET actor = 'mallory'", {}, "run_notes", "20"),
    "a note's time": ("UPDATE run_notes SET noted_at = :t", {"t": "2027-01-01T00:00:00Z"},
                      "run_notes", "20"),
    "a deletion's author": ("UPDATE run_deletions SET deleted_by = 'mallory'", {},
                            "run_deletions", "R2"),
    "a deletion's time": ("UPDATE run_deletions SET deleted_at = 'x'", {}, "run_deletions",
                          "R2"),
    "a run more": (
        "INSERT INTO runs SELECT 'R8', pipeline, pipeline_fingerprint, status, owner, host, "
        "process, params, seed, git, environment, record, started_at, ended_at, error, "
        "steps_total, first_seq, last_seq, name, purpose FROM runs WHERE run_id = 'R4'", {},
        "runs", "R8",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(LATER_TAMPERING))
def test_an_edited_row_of_an_ended_run_is_named_as_in_one_process(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    parts: list[audit_parallel.Part | None],
    case: str,
) -> None:
    ledger = _ledger(tmp_path)
    _later(ledger)
    statement, params, table, key = LATER_TAMPERING[case]
    _exec(ledger, statement, **params)
    report = ledger.verify()
    assert parts
    assert parts[0] is not None
    assert report.chain_ok
    assert [(p.table, p.key) for p in report.derived] == [(table, key)]
    _same(report, ledger)
    # The same, with every row compared (and dropped) before the later events come.
    monkeypatch.setattr(audit_parallel, "_STEP", 1)
    part, _, tries = _beside(tmp_path, ledger)
    assert part is not None
    assert [(p.table, p.key) for p in part.problems] == [(table, key)]
    assert (part.rows, part.problems) == (parts[0].rows, parts[0].problems)
    # The streaming model refused (as the events went, or at the end); the replay named it.
    assert tries == ["stream Unmodelled", "replay answered"]
    ledger.close()


# An event naming a step run or run whose rows were compared already, after which they
# would be what they were (its end then differs from the stored row, and waits).
AGAIN: dict[str, tuple[EventKind, str, EventKind, dict[str, Any]]] = {
    "a hit of an ended step run": (
        EventKind.STEP_COMPLETED, "S1", EventKind.STEP_CACHED,
        {"decision": "hit", "outputs": {"output": _digest("a"), "more": _digest("d")},
         "output_metrics": {"auc": 0.5, "more": 1.0}},
    ),
    "a step run started again": (EventKind.STEP_STARTED, "S2", EventKind.STEP_STARTED, {}),
    "a run started again": (
        EventKind.RUN_STARTED, "R2", EventKind.RUN_STARTED, {"params": {"lr": 0.1, "m": 0.9}},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(AGAIN))
def test_an_event_of_a_step_or_run_compared_already_models_again_without_streaming(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    parts: list[audit_parallel.Part | None],
    case: str,
) -> None:
    ledger = _ledger(tmp_path)
    kind, ident, new, changes = AGAIN[case]
    name = "run_id" if kind == EventKind.RUN_STARTED else "step_run_id"
    again = next(
        e
        for e in ledger.iter_events()
        if e.kind == kind and json.loads(e.payload_text).get(name) == ident
    )
    payload = {**json.loads(again.payload_text), **changes}
    ledger.append([EventDraft(new, payload, run_id=again.run_id)])
    report = ledger.verify()
    assert report.ok, report
    assert parts
    assert parts[0] is not None
    _same(report, ledger)
    monkeypatch.setattr(audit_parallel, "_STEP", 1)
    part, kept, tries = _beside(tmp_path, ledger)
    replayed, _, _ = _beside(tmp_path, ledger, model=False)
    assert part is not None
    assert replayed is not None
    assert (part.rows, part.problems) == (replayed.rows, ())
    # The streaming model gave up at the event; the model holding every row answered.
    assert tries == ["stream Unstreamed", "model answered"]
    assert not kept[1].streams("runs")
    ledger.close()
