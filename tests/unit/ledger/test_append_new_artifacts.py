"""``Ledger.append(new_artifacts_only=True)``: artifacts the ledger records are left out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.ledger import Ledger

if TYPE_CHECKING:
    from pathlib import Path


def _artifact(i: int) -> EventDraft:
    digest = "blake3:" + f"{i:064x}"
    payload = {
        "digest": digest,
        "blob": digest,
        "serializer": "json",
        "type_name": "builtins.int",
        "size": 1,
        "meta": {},
        "role": "output",
        "run_id": None,
        "step_run_id": None,
    }
    return EventDraft(EventKind.ARTIFACT_RECORDED, payload)


def _kinds_and_digests(ledger: Ledger) -> list[tuple[str, str | None]]:
    return [(e.kind, e.payload.get("digest")) for e in ledger.iter_events()]


def test_recorded_artifacts_are_left_out_in_the_append(tmp_path: Path) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", actor="tester")
    ledger.append([_artifact(1)])
    noted = EventDraft(EventKind.ALERT_SENT, {"rule": "r"})
    appended = ledger.append([_artifact(1), _artifact(2), noted], new_artifacts_only=True)
    assert [(e.kind, e.seq) for e in appended] == [("artifact.recorded", 2), ("alert.sent", 3)]
    assert _kinds_and_digests(ledger) == [
        ("artifact.recorded", "blake3:" + f"{1:064x}"),
        ("artifact.recorded", "blake3:" + f"{2:064x}"),
        ("alert.sent", None),
    ]
    assert ledger.append([_artifact(1), _artifact(2)], new_artifacts_only=True) == []
    assert len(_kinds_and_digests(ledger)) == 3
    assert ledger.verify().ok
    ledger.close()


def test_without_the_flag_every_draft_is_appended(tmp_path: Path) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", actor="tester")
    ledger.append([_artifact(1)])
    assert len(ledger.append([_artifact(1)])) == 1
    assert [d for _, d in _kinds_and_digests(ledger)] == ["blake3:" + f"{1:064x}"] * 2
    ledger.close()


def test_batches_of_every_size_leave_out_exactly_the_recorded_ones(tmp_path: Path) -> None:
    from pipetrail.ledger.ledger import _new_artifacts_only, _padded

    assert [_padded(n) for n in (1, 2, 3, 5, 64, 65, 499, 500)] == [1, 2, 4, 8, 64, 128, 500, 500]
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", actor="tester")
    ledger.append([_artifact(i) for i in range(0, 1200, 3)])  # every third is recorded
    for size in (1, 2, 3, 7, 64, 65, 499, 500, 501, 1100):
        drafts = [_artifact(i) for i in range(size)]
        left = _new_artifacts_only(ledger.db, drafts)
        assert [d.payload["digest"] for d in left] == [
            d.payload["digest"] for i, d in enumerate(drafts) if i % 3
        ], size
    ledger.close()
