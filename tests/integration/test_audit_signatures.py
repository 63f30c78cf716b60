"""``audit verify`` shares the governance signatures with its second process: the same report.

On a large SQLite ledger the second process checks signatures from the last governance
event back once its replay is done, while the first checks them from the first event on
(:func:`pipetrail.governance.verify.audit_signatures`); the fold takes both's verdicts.
Here the size threshold is lowered so that small ledgers take that path, the first
process is made to take the second's verdicts for all or part of the events, and every
result is compared with the fold that checks every signature itself: forged signatures,
keys a signer does not hold and rotated keys are named the same, in the same order.
"""

from __future__ import annotations

import base64
import marshal
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pipetrail.governance import keys as keys_module
from pipetrail.governance import rules
from pipetrail.governance import verify as governance_verify
from pipetrail.governance.identity import signed_draft
from pipetrail.governance.keys import KEY_PREFIX, PublicKey, Signer
from pipetrail.ledger import EventKind, audit, audit_parallel
from pipetrail.ledger.ledger import Ledger
from tests.contract.test_ledger import _digest, _run_drafts

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.ledger.audit import Sent
    from pipetrail.ledger.driver import Driver


def _signer(name: str) -> Signer:
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return Signer(name, PublicKey(KEY_PREFIX + base64.b64encode(raw).decode(), raw), private)


def _decision(signer: Signer, n: int) -> Any:
    content = {"kind": "other", "text": f"note {n}", "about": {"run_id": "R1"}}
    return signed_draft(EventKind.DECISION_RECORDED, content, signer)


def _ledger(tmp_path: Path) -> tuple[Ledger, list[int]]:
    """A governance record with failures spread over it; the sequence numbers that fail.

    A forged signature (another decision's), a signature claimed with a key the signer
    does not hold, and one made with a key its signer rotated away, among decisions that
    verify, signed by two users, one of whom rotates their key halfway.
    """
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", actor="tester")
    ledger.append(_run_drafts("R1", step_run_id="S1", output=_digest("a"), cache_key=_digest("1")))
    alice, bob, bob2 = _signer("alice"), _signer("bob"), _signer("bob")
    admin = {"user": "alice", "roles": ["admin"], "kind": "person"}
    ledger.append(
        [signed_draft(EventKind.USER_ADDED, {**admin, "public_key": alice.public_key.text}, alice)]
    )
    added = {"user": "bob", "roles": ["admin"], "kind": "person", "public_key": bob.public_key.text}
    ledger.append([signed_draft(EventKind.USER_ADDED, added, alice)])
    failing: list[int] = []
    for n in range(40):
        signer = alice if n % 3 else (bob if n < 20 else bob2)
        draft = _decision(signer, n)
        if n in (3, 31):  # another decision's signature: forged
            draft.payload["signature"] = _decision(signer, 1000 + n).payload["signature"]
        if n in (10, 35):  # bob's key id, alice's signature
            draft.payload["key_id"] = bob.public_key.key_id if n == 10 else bob2.public_key.key_id
        if n == 20:
            rotated = {"user": "bob", "public_key": bob2.public_key.text}
            ledger.append([signed_draft(EventKind.USER_KEY_ROTATED, rotated, bob)])
        if n == 27:  # signed with the key bob rotated away
            draft = _decision(bob, n)
        ledger.append([draft])
        if n in (3, 10, 27, 31, 35):
            failing.append(_head(ledger)[0])
    return ledger, failing


def _head(ledger: Ledger) -> tuple[int, str]:
    seq, digest = ledger.db.rows("SELECT seq, hash FROM ledger_head WHERE id = 1")[0]
    return int(seq), str(digest)


def _whole(ledger: Ledger) -> dict[str, Any]:
    """The fold that checks every signature itself, in one process."""
    return governance_verify.verify_governance(ledger, chain_verified=True)


def _counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the signatures this process checks (the second process is not counted)."""
    calls: list[int] = []
    real = keys_module.verify_signature

    def counted(*args: Any) -> bool:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(keys_module, "verify_signature", counted)
    monkeypatch.setattr(rules, "verify_signature", counted)
    return calls


class _Given:
    """Items handed to the first process's check as if the second process sent them."""

    def __init__(self, items: list[tuple[int, Any]], sent: Sent | None = None) -> None:
        self.items, self.sent = [items], sent

    def arrived(self) -> list[Any]:
        return self.items.pop() if self.items else []

    def enough(self) -> None:
        if self.sent is not None:
            self.sent.enough()


def _taking(
    monkeypatch: pytest.MonkeyPatch, *, from_index: int
) -> Callable[[], list[tuple[int, Any]]]:
    """Make the first process wait for every batch of the second, then take those from
    ``from_index`` on (so that it checks the events before it itself). Returns what the
    second process sent."""
    sent: list[tuple[int, Any]] = []
    real = governance_verify._shared_check

    def check(db: Driver, beside: Sent, *, batch: int) -> dict[str, Any]:
        deadline = time.monotonic() + 120
        while not any(start == 0 for start, _ in sent):
            sent.extend(beside.arrived())
            if time.monotonic() > deadline:
                pytest.fail("the second process sent no batch for the first event")
            time.sleep(0.01)
        given = _Given([item for item in sent if item[0] >= from_index], beside)
        return real(db, given, batch=batch)

    monkeypatch.setattr(governance_verify, "_shared_check", check)
    return lambda: sent


def endless(db: Driver) -> Any:
    """A share that never ends (run by the second process, see the last test)."""
    while True:
        yield db.rows("SELECT seq FROM ledger_head WHERE id = 1")[0][0]


@pytest.fixture
def beside(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_parallel, "PARALLEL_FROM", 0)


@pytest.mark.usefixtures("beside")
def test_signatures_checked_by_the_second_process_are_reported_as_by_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger, failing = _ledger(tmp_path)
    expected = _whole(ledger)
    assert [p["seq"] for p in expected["problems"]] == failing
    sent = _taking(monkeypatch, from_index=0)
    calls = _counted(monkeypatch)
    meanwhile = governance_verify.audit_signatures(batch=4)
    report = ledger.verify(meanwhile=meanwhile)
    assert report.ok
    assert meanwhile.shared
    assert sum(len(g) + len(b) for _, found in sent() for _, g, b in found) > 30
    assert calls == []  # every signature was checked by the second process
    assert meanwhile.result == expected
    ledger.close()


@pytest.mark.usefixtures("beside")
@pytest.mark.parametrize("from_index", [1, 13, 22, 30])
def test_verdicts_of_both_processes_are_merged_in_sequence_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, from_index: int
) -> None:
    ledger, _ = _ledger(tmp_path)
    expected = _whole(ledger)
    _taking(monkeypatch, from_index=from_index)
    calls = _counted(monkeypatch)
    meanwhile = governance_verify.audit_signatures(batch=4)
    ledger.verify(meanwhile=meanwhile)
    assert 0 < len(calls) < expected["events"]  # each process checked some
    assert meanwhile.result == expected
    ledger.close()


def test_a_verdict_for_another_key_is_not_taken(tmp_path: Path) -> None:
    """A verdict is taken only for the very key the fold finds the signer holding."""
    ledger, failing = _ledger(tmp_path)
    expected = _whole(ledger)
    stranger = _signer("alice").public_key.raw
    every = list(range(1, _head(ledger)[0] + 1))
    # every event declared verified, with a key no user holds: nothing is taken
    given = _Given([(0, [(stranger, every, [])])])
    with ledger.db.snapshot():
        found = governance_verify._shared_check(ledger.db, given)
    assert found == expected
    assert [p["seq"] for p in found["problems"]] == failing
    ledger.close()


@pytest.mark.usefixtures("beside")
def test_a_share_the_second_process_cannot_run_is_checked_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger, _ = _ledger(tmp_path)
    expected = _whole(ledger)
    calls = _counted(monkeypatch)
    whole = partial(governance_verify.governance_in_snapshot, chain_verified=True)
    share = audit.Share(
        f"{governance_verify.__name__}:no_such_function", (4,), governance_verify._shared_check
    )
    meanwhile = audit.Meanwhile(whole, share=share)
    assert ledger.verify(meanwhile=meanwhile).ok
    assert meanwhile.shared
    assert meanwhile.result == expected
    assert len(calls) == expected["events"]  # every event names a key of the record
    ledger.close()


@pytest.mark.usefixtures("beside")
def test_when_the_second_process_fails_everything_is_checked_in_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger, _ = _ledger(tmp_path)
    expected = _whole(ledger)
    alone = ledger.verify()
    monkeypatch.setattr(audit_parallel, "_RUN", "import sys; sys.exit(3)")
    meanwhile = governance_verify.audit_signatures(batch=4)
    report = ledger.verify(meanwhile=meanwhile)
    assert report == alone
    assert meanwhile.result == expected
    ledger.close()


def test_the_share_reads_nothing_of_another_head(tmp_path: Path) -> None:
    ledger, _ = _ledger(tmp_path)
    file = str(tmp_path / "ledger.db")
    head = _head(ledger)
    function = f"{governance_verify.__name__}:signatures_beside"
    args = marshal.dumps((4,)).hex()
    share = audit_parallel._Share(file, (head[0], "blake3:" + "0" * 64), function, args)
    assert list(share.items()) == []
    share = audit_parallel._Share(file, head, function, args)
    assert len(list(share.items())) == 11  # 43 events, 4 at a time
    ledger.close()


@pytest.mark.usefixtures("beside")
def test_the_second_process_ends_when_its_items_are_no_longer_wanted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger, _ = _ledger(tmp_path)
    root = str(Path(__file__).resolve().parents[2])  # where the second process finds `endless`
    monkeypatch.setenv("PYTHONPATH", root)
    ended: list[int] = []

    def finish(db: Driver, sent: Sent) -> int:
        deadline = time.monotonic() + 120
        while not sent.arrived():  # the share runs: the replay's answer is in
            if time.monotonic() > deadline:
                pytest.fail("the second process sent no item")
            time.sleep(0.01)
        sent.enough()
        assert isinstance(sent, audit_parallel.Beside)
        ended.append(sent._process.wait(timeout=120))  # without enough(): never ends
        return 1

    meanwhile = audit.Meanwhile(lambda db: 0, share=audit.Share(f"{__name__}:endless", (), finish))
    assert ledger.verify(meanwhile=meanwhile).ok
    assert meanwhile.result == 1
    assert len(ended) == 1
    ledger.close()
