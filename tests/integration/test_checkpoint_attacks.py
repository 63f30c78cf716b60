"""Signed checkpoints against a real ledger: every attack an insider can try is caught.

Each test builds a ledger on SQLite or PostgreSQL, signs checkpoints into a witness
folder (or git repository), tampers with the database as someone with write access
would, and checks the verdict: the first checkpoint that fails, and why.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa

from pipetrail.errors import GovernanceError, NotFoundError
from pipetrail.governance.audit_trail import (
    CheckpointsReport,
    check_proof,
    inclusion_proof,
    make_checkpoint,
    verify_checkpoints,
)
from pipetrail.governance.keys import create_key, load_signer
from pipetrail.governance.witness import Witness
from pipetrail.ledger.events import event_hash
from pipetrail.ledger.ledger import Ledger
from tests.integration.test_merkle_ledger import fill

if TYPE_CHECKING:
    from pathlib import Path

    from pipetrail.governance.keys import PublicKey, Signer

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

TABLES = ("events", "ledger_head", "merkle_nodes", "sources")


class Setup:
    def __init__(self, url: str, tmp_path: Path) -> None:
        self.ledger = Ledger.open(url, actor="tester")
        self.home = tmp_path / "home"
        self.witness = Witness(tmp_path / "witness")
        self.alice = signer(self.home, "alice")

    @property
    def keys(self) -> list[tuple[str, PublicKey]]:
        return [("alice", self.alice.public_key)]

    def checkpoint(self, by: Signer | None = None) -> str:
        cp, note = make_checkpoint(self.ledger.db, by or self.alice)
        return self.witness.write(cp, note, signer=(by or self.alice).name)

    def verify(self) -> CheckpointsReport:
        return verify_checkpoints(self.ledger.db, self.witness.notes(), self.keys)


def signer(home: Path, name: str) -> Signer:
    create_key(name, folder=home)
    return load_signer(name, folder=home)


@pytest.fixture
def setup(metadata_url: str, tmp_path: Path) -> Any:
    made = Setup(metadata_url, tmp_path)
    yield made
    made.ledger.close()


def copy_tables(ledger: Ledger) -> dict[str, list[dict[str, Any]]]:
    """A backup of the ledger (what an insider restores later)."""
    backup = {}
    with ledger.engine.connect() as conn:
        for table in TABLES:
            rows = conn.execute(sa.text(f"SELECT * FROM {table}"))  # noqa: S608
            backup[table] = [dict(r._mapping) for r in rows]
    return backup


def restore(ledger: Ledger, backup: dict[str, list[dict[str, Any]]]) -> None:
    with ledger.engine.begin() as conn:
        for table, rows in backup.items():
            conn.execute(sa.text(f"DELETE FROM {table}"))  # noqa: S608
            if rows:
                names = ", ".join(rows[0])
                marks = ", ".join(f":{c}" for c in rows[0])
                insert = f"INSERT INTO {table} ({names}) VALUES ({marks})"  # noqa: S608
                conn.execute(sa.text(insert), rows)


def truncate(ledger: Ledger, keep: int) -> None:
    """Delete the events after ``keep`` and everything that points at them."""
    with ledger.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM events WHERE seq > :k"), {"k": keep})
        conn.execute(sa.text("DELETE FROM sources WHERE seq > :k"), {"k": keep})
        last = conn.execute(sa.text("SELECT hash FROM events WHERE seq = :k"), {"k": keep})
        conn.execute(
            sa.text("UPDATE ledger_head SET seq = :k, hash = :h WHERE id = 1"),
            {"k": keep, "h": last.scalar_one()},
        )


def rewrite_chain(ledger: Ledger, seq: int) -> None:
    """Edit event ``seq`` and re-hash it and every later event, as a careful insider would."""
    with ledger.engine.begin() as conn:
        rows = [dict(r._mapping) for r in conn.execute(
            sa.text("SELECT * FROM events WHERE seq >= :s ORDER BY seq"), {"s": seq})]  # fmt: skip
        prev = rows[0]["prev_hash"]
        for row in rows:
            if row["seq"] == seq:
                row["payload"] = row["payload"].replace('"size":', '"size":1000')
            row["prev_hash"] = prev
            row["hash"] = event_hash(
                seq=row["seq"], ts=row["ts"], actor=row["actor"], kind=row["kind"],
                run_id=row["run_id"], payload_text=row["payload"], prev_hash=prev,
            )  # fmt: skip
            prev = row["hash"]
        conn.execute(sa.text("DELETE FROM events WHERE seq >= :s"), {"s": seq})
        conn.execute(
            sa.text(
                "INSERT INTO events (seq, ts, actor, kind, run_id, payload, prev_hash, hash) "
                "VALUES (:seq, :ts, :actor, :kind, :run_id, :payload, :prev_hash, :hash)"
            ),
            rows,
        )
        conn.execute(sa.text("UPDATE ledger_head SET hash = :h WHERE id = 1"), {"h": prev})


def failure(report: CheckpointsReport) -> tuple[int | None, str]:
    first = report.first_failure
    assert first is not None, report
    return first.size, first.reason


def test_an_intact_ledger_is_consistent_with_every_checkpoint(setup: Setup) -> None:
    n = 0
    for batch in (3, 1, 8, 5):
        n = fill(setup.ledger, [batch], n)
        setup.checkpoint()
    report = setup.verify()
    assert report.ok, report
    assert [r.size for r in report.results] == [3, 4, 12, 17]


def test_tail_truncation_is_caught(setup: Setup) -> None:
    fill(setup.ledger, [6, 4])
    setup.checkpoint()
    truncate(setup.ledger, 7)
    assert setup.ledger.verify().chain_ok  # the chain alone cannot see it
    size, reason = failure(setup.verify())
    assert size == 10
    assert "holds only 7" in reason
    assert "deleted from the end" in reason


def test_a_rollback_to_an_older_copy_is_caught_even_after_new_appends(setup: Setup) -> None:
    n = fill(setup.ledger, [5])
    setup.checkpoint()
    backup = copy_tables(setup.ledger)
    n = fill(setup.ledger, [4], n)
    setup.checkpoint()  # signed 9 events
    restore(setup.ledger, backup)  # last week's copy: 5 events
    size, reason = failure(setup.verify())
    assert (size, "holds only 5" in reason) == (9, True)
    fill(setup.ledger, [6], 100)  # appended to since: now larger than the checkpoint
    report = setup.verify()
    assert setup.ledger.verify().ok  # chain, derived rows and the tree all look fine
    size, reason = failure(report)
    assert size == 9
    assert "not those it signed" in reason
    assert report.results[0].ok  # the 5-event checkpoint is still a prefix


def test_a_consistently_rehashed_rewrite_is_caught(setup: Setup) -> None:
    fill(setup.ledger, [20, 20, 20])
    setup.checkpoint()
    rewrite_chain(setup.ledger, 30)
    report = setup.ledger.verify()
    assert report.chain_ok  # the chain was recomputed: it verifies
    assert {p.table for p in report.derived} == {"sources", "merkle_nodes"}
    setup.ledger.rebuild_projections()  # the insider also rebuilds the derived rows
    assert setup.ledger.verify().ok
    size, reason = failure(setup.verify())
    assert size == 60
    assert "not those it signed" in reason
    assert "rewritten" in reason


def test_two_diverging_copies_are_a_fork(setup: Setup) -> None:
    n = fill(setup.ledger, [4])
    backup = copy_tables(setup.ledger)
    fill(setup.ledger, [3], n)
    setup.checkpoint()  # copy A, 7 events
    branch_a = copy_tables(setup.ledger)
    restore(setup.ledger, backup)
    fill(setup.ledger, [3], 50)
    setup.checkpoint()  # copy B, 7 other events
    report = setup.verify()  # the database now holds copy B
    size, reason = failure(report)
    assert size == 7
    assert "forked" in reason
    assert "different trees of 7 events" in reason
    restore(setup.ledger, branch_a)
    fill(setup.ledger, [2], 60)
    size, reason = failure(setup.verify())  # copy A grown: B's checkpoint is no prefix
    assert size == 7
    assert "forked" in reason


def test_an_edited_checkpoint_is_a_forged_signature(setup: Setup) -> None:
    fill(setup.ledger, [5])
    where = setup.checkpoint()
    path = setup.witness.path / where.rsplit("/", 1)[-1]
    text = path.read_text()
    path.write_text(text.replace("\n5\n", "\n4\n", 1))
    size, reason = failure(setup.verify())
    assert size is None
    assert "does not verify: the text was changed" in reason


def test_a_checkpoint_signed_by_an_unknown_key_is_refused(setup: Setup, tmp_path: Path) -> None:
    fill(setup.ledger, [5])
    setup.checkpoint(by=signer(tmp_path / "mallory-home", "mallory"))
    _, reason = failure(setup.verify())
    assert "signed by mallory, none of them a known key" in reason
    # The same name with another key is no better.
    impostor = signer(tmp_path / "impostor", "alice")
    setup.checkpoint(by=impostor)
    assert all(not r.ok for r in setup.verify().results)


def test_a_checkpoint_of_another_project_is_refused(setup: Setup, tmp_path: Path) -> None:
    fill(setup.ledger, [5])
    other = Ledger.open(f"sqlite:///{tmp_path / 'other.db'}", actor="tester")
    fill(other, [5], 200)
    cp, note = make_checkpoint(other.db, setup.alice)
    setup.witness.write(cp, note, signer="alice")
    other.close()
    _, reason = failure(setup.verify())
    assert "from another project" in reason


def test_inclusion_proofs_check_with_hashes_alone(setup: Setup) -> None:
    fill(setup.ledger, [7, 6])
    setup.checkpoint()
    note = setup.witness.notes()[0].text
    signed_root = note.splitlines()[2]
    for seq in range(1, 14):
        proof = inclusion_proof(setup.ledger.db, seq, 13)
        assert proof["root"] == signed_root
        assert check_proof(proof)
        proof["leaf_data"] = "00" * 32
        assert not check_proof(proof)
    small = inclusion_proof(setup.ledger.db, 2, 5)
    assert check_proof(small)
    assert small["tree_size"] == 5
    assert base64.b64decode(small["root"]) != base64.b64decode(signed_root)
    with pytest.raises(NotFoundError, match="cannot hold event 9"):
        inclusion_proof(setup.ledger.db, 9, 5)
    with pytest.raises(NotFoundError, match="no event 99"):
        inclusion_proof(setup.ledger.db, 99)


def test_git_witness_keeps_checkpoints_a_later_commit_deleted(setup: Setup, tmp_path: Path) -> None:
    setup.witness = Witness(tmp_path / "repo", git=True)
    fill(setup.ledger, [6])
    where = setup.checkpoint()
    truncate(setup.ledger, 4)
    first = where.split(" (commit")[0]
    import subprocess

    subprocess.run(["git", "-C", str(setup.witness.path), "rm", "-q", first], check=True)
    subprocess.run(
        ["git", "-C", str(setup.witness.path), "-c", "user.name=x", "-c", "user.email=x@x",
         "commit", "-qm", "hide it"], check=True,
    )  # fmt: skip
    reread = Witness(setup.witness.path)
    assert reread.git
    report = verify_checkpoints(setup.ledger.db, reread.notes(), setup.keys)
    size, reason = failure(report)
    assert size == 6
    assert "holds only 4" in reason
    assert "(commit " in report.results[0].where


def test_a_witness_inside_another_repository_is_refused(setup: Setup, tmp_path: Path) -> None:
    import subprocess

    subprocess.run(["git", "init", "-q", str(tmp_path / "project")], check=True)
    fill(setup.ledger, [2])
    setup.witness = Witness(tmp_path / "project" / "witness", git=True)
    with pytest.raises(GovernanceError, match="inside the git repository"):
        setup.checkpoint()
