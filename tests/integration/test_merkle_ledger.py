"""The Merkle tree's nodes kept in the ledger, on SQLite and PostgreSQL.

Appends extend the tree in their own transaction; a tree that is behind its events is
completed on open or on the next append; ``audit verify`` reports a stored node that
differs, is missing or is extra, and ``audit rebuild`` puts it right.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
import sqlalchemy as sa

from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.ledger import Ledger
from pipetrail.ledger.merkle import (
    event_leaf,
    node_hash,
    verify_consistency,
    verify_inclusion,
)
from pipetrail.ledger.merkle_store import LOW_LEVEL, TreeCheck, read_tree

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162's MTH over leaf hashes, written out directly."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def source(i: int) -> EventDraft:
    return EventDraft(
        EventKind.SOURCE_OBSERVED,
        {
            "run_id": "R1",
            "path": f"data/{i}.csv",
            "digest": "blake3:" + f"{i:064x}",
            "size": i,
            "mtime_ns": i,
            "observed_at": "2026-01-01T00:00:00.000000Z",
        },
        run_id="R1",
    )


def fill(ledger: Ledger, sizes: list[int], start: int = 0) -> int:
    for size in sizes:
        ledger.append([source(start + j) for j in range(size)])
        start += size
    return start


def leaves(ledger: Ledger) -> list[bytes]:
    return [event_leaf(e.hash) for e in ledger.iter_events()]


def execute(ledger: Ledger, sql: str, **params: Any) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def stored_rows(n: int) -> int:
    """One row per complete subtree of 16 leaves or more."""
    return sum(n >> level for level in range(LOW_LEVEL, n.bit_length() + 1))


def node_count(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT COUNT(*) FROM merkle_nodes")).scalar_one())


def test_appends_keep_the_stored_tree_equal_to_the_rfc_tree(metadata_url: str) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    rng = random.Random(7)
    fill(ledger, [rng.randint(1, 9) for _ in range(30)])
    got = leaves(ledger)
    reader = read_tree(ledger.db)
    for n in range(1, len(got) + 1):
        assert reader.root(n) == mth(got[:n]), n
        for m in {1, n // 2, n - 1} - {0}:
            proof = reader.consistency_proof(m, n)
            assert verify_consistency(m, n, mth(got[:m]), mth(got[:n]), proof), (m, n)
        for i in {0, n // 2, n - 1}:
            path = reader.inclusion_proof(i, n)
            assert verify_inclusion(got[i], i, n, path, mth(got[:n])), (i, n)
    assert node_count(ledger) == stored_rows(len(got))
    assert ledger.verify().ok
    ledger.close()


def test_many_proofs_at_once_equal_one_by_one_and_verify(metadata_url: str) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    rng = random.Random(11)
    fill(ledger, [rng.randint(20, 90) for _ in range(12)])
    got = leaves(ledger)
    for n in (len(got), len(got) - 37, 300, 17):
        wanted = [*range(min(n, 40)), *range(max(0, n - 70), n), *rng.sample(range(n), min(n, 25))]
        paths = read_tree(ledger.db).inclusion_proofs(wanted, n)  # a fresh reader: no cache
        assert sorted(paths) == sorted(set(wanted))
        one = read_tree(ledger.db)
        for i, path in paths.items():
            assert path == one.inclusion_proof(i, n), (i, n)
            assert verify_inclusion(got[i], i, n, path, mth(got[:n])), (i, n)
    with pytest.raises(ValueError, match="leaf 5 is not in a tree of 5 leaves"):
        read_tree(ledger.db).inclusion_proofs([0, 5], 5)
    ledger.close()


def test_two_writers_interleaved_extend_one_tree(metadata_url: str) -> None:
    first = Ledger.open(metadata_url, actor="one")
    second = Ledger.open(metadata_url, actor="two")
    n = 0
    for i in range(6):
        n = fill(first if i % 2 else second, [i + 1], n)
    got = leaves(first)
    assert read_tree(first.db).root(len(got)) == mth(got)
    assert first.verify().ok
    first.close()
    second.close()


def test_a_tree_behind_its_events_is_completed_on_the_next_append(metadata_url: str) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    n = fill(ledger, [50, 30])
    execute(ledger, "DELETE FROM merkle_nodes WHERE level >= 5")  # the edge (6, 0) is gone
    other = Ledger.open(metadata_url, actor="tester")  # knows nothing of the old edge
    fill(other, [2], n)
    assert node_count(other) == stored_rows(82)
    got = leaves(other)
    assert read_tree(other.db).root(len(got)) == mth(got)
    assert other.verify().ok
    ledger.close()
    other.close()


def test_opening_an_older_ledger_builds_its_tree_once(metadata_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    ledger = Ledger.open(metadata_url, actor="tester")
    fill(ledger, [40, 9, 1])
    config = Config()
    config.set_main_option("script_location", "pipetrail.ledger:migrations")
    with ledger.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0002")  # as written before the tree existed
    ledger.close()
    reopened = Ledger.open(metadata_url, actor="tester")
    got = leaves(reopened)
    assert node_count(reopened) == stored_rows(len(got)) == 4  # 3 blocks of 16, 1 of 32
    assert read_tree(reopened.db).root(len(got)) == mth(got)
    fill(reopened, [3], 50)
    assert reopened.verify().ok
    reopened.close()


def test_verify_names_each_node_that_disagrees_and_rebuild_restores_them(
    metadata_url: str,
) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    fill(ledger, [30, 40, 30])  # 100 events: 6 blocks of 16, 3 of 32, one of 64
    execute(ledger, "UPDATE merkle_nodes SET hash = :h WHERE level = 5 AND idx = 2", h=b"x" * 32)
    execute(ledger, "DELETE FROM merkle_nodes WHERE level = 4 AND idx = 1")
    execute(ledger, "INSERT INTO merkle_nodes (level, idx, hash) VALUES (4, 50, :h)", h=b"y" * 32)
    execute(ledger, "INSERT INTO merkle_nodes (level, idx, hash) VALUES (9, 0, :h)", h=b"z" * 32)
    execute(ledger, "INSERT INTO merkle_nodes (level, idx, hash) VALUES (0, 3, :h)", h=b"w" * 32)
    report = ledger.verify()
    assert not report.ok
    assert report.chain_ok
    found = {(p.table, p.key, p.problem) for p in report.derived}
    assert found == {
        ("merkle_nodes", "5, 2", "differs"),
        ("merkle_nodes", "4, 1", "missing"),
        ("merkle_nodes", "4, 50", "extra"),
        ("merkle_nodes", "9, 0", "extra"),
        ("merkle_nodes", "0, 3", "extra"),
    }
    differs = next(p for p in report.derived if p.problem == "differs")
    assert differs.columns[0][1] == (b"x" * 32).hex()
    rebuilt = ledger.rebuild_projections()
    assert len(rebuilt.changed) == 5
    assert ledger.verify().ok
    got = leaves(ledger)
    assert read_tree(ledger.db).root(len(got)) == mth(got)
    ledger.close()


def test_an_empty_ledger_has_no_nodes_and_verifies(metadata_url: str) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    execute(ledger, "INSERT INTO merkle_nodes (level, idx, hash) VALUES (4, 0, :h)", h=b"y" * 32)
    report = ledger.verify()
    assert [(p.key, p.problem) for p in report.derived] == [("4, 0", "extra")]
    ledger.close()


def test_the_tree_check_recomputes_every_stored_node_in_any_batches(metadata_url: str) -> None:
    # audit verify hands the walk's digests to TreeCheck in batches that rarely end on a
    # 16-leaf block: whole blocks are hashed a level at a time, the rest waits. Every
    # stored node must be recomputed from the events whatever the cuts, so that an edit
    # of any one of them (a low one, a high one, the last) is named.
    ledger = Ledger.open(metadata_url, actor="tester")
    n = fill(ledger, [37, 1, 90, 16, 150])  # 294 events: stored nodes up to level 8
    digests = [bytes.fromhex(e.hash.removeprefix("blake3:")) for e in ledger.iter_events()]
    rng = random.Random(13)

    def check() -> list[tuple[str, str]]:
        tree = TreeCheck(ledger.db)
        at = 0
        while at < n:
            step = rng.choice([1, 3, 15, 16, 17, 40, 500])
            tree.add_digests(digests[at : at + step])
            at += step
        problems = tree.finish()
        assert tree.size == n
        assert tree.nodes == stored_rows(n)
        return [(p.key, p.problem) for p in problems]

    for _ in range(5):
        assert check() == []
    for level, idx in [(4, 0), (4, 17), (5, 8), (6, 3), (8, 0)]:
        with ledger.engine.connect() as conn:
            was = conn.execute(
                sa.text("SELECT hash FROM merkle_nodes WHERE level = :l AND idx = :i"),
                {"l": level, "i": idx},
            ).scalar_one()
        edit = "UPDATE merkle_nodes SET hash = :h WHERE level = :l AND idx = :i"
        execute(ledger, edit, h=bytes(b ^ 1 for b in was), l=level, i=idx)
        assert check() == [(f"{level}, {idx}", "differs")]
        execute(ledger, edit, h=was, l=level, i=idx)
    assert check() == []
    ledger.close()


def test_nodes_edited_into_other_types_are_named_not_fatal(tmp_path: Any) -> None:
    # SQLite keeps whatever type an edit writes (PostgreSQL's columns refuse it): a hash
    # stored as text, an index stored as text or as a fraction. audit verify names each
    # such row, as it reads, instead of stopping on a conversion.
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", actor="tester")
    fill(ledger, [100])  # stored nodes: 6 at level 4, 3 at level 5, one at level 6
    execute(ledger, "UPDATE merkle_nodes SET hash = 'text' WHERE level = 5 AND idx = 1")
    execute(ledger, "INSERT INTO merkle_nodes (level, idx, hash) VALUES (4, 2.5, :h)", h=b"a" * 32)
    execute(ledger, "INSERT INTO merkle_nodes (level, idx, hash) VALUES (4, 'x', :h)", h=b"b" * 32)
    execute(ledger, "INSERT INTO merkle_nodes (level, idx, hash) VALUES ('y', 0, :h)", h=b"c" * 32)
    execute(ledger, "INSERT INTO merkle_nodes (level, idx, hash) VALUES (2, 'z', :h)", h=b"d" * 32)
    report = ledger.verify()
    assert report.chain_ok
    found = {(p.key, p.problem) for p in report.derived}
    assert found == {
        ("5, 1", "differs"),
        ("4, 2.5", "extra"),
        ("4, x", "extra"),
        ("y, 0", "extra"),
        ("2, z", "extra"),
    }
    differs = next(p for p in report.derived if p.problem == "differs")
    assert differs.columns[0][1] == "'text'"
    ledger.rebuild_projections()
    assert ledger.verify().ok
    ledger.close()
