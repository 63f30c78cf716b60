"""Objects looked up ahead for cache hits are vouched for only while none left the store."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import IntegrityError
from pipetrail.execution.cache_ahead import CacheAhead
from pipetrail.execution.flushing import MAX_DELAY_S
from pipetrail.ledger.ledger import Ledger
from pipetrail.store import LocalStore
from pipetrail.store.memory import MemoryStore
from tests.contract.test_cache_rows import _key, _run

if TYPE_CHECKING:
    from pathlib import Path


def _setup(tmp_path: Path) -> tuple[Ledger, LocalStore, str]:
    store = LocalStore(tmp_path / "objects")
    digest = store.put_bytes(b'{"n": 1}')
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", actor="tester")
    ledger.append(_run("R1", [1, 2, 3], digest))
    return ledger, store, digest


def test_outputs_read_ahead_are_found_in_one_lookup(tmp_path: Path) -> None:
    ledger, store, digest = _setup(tmp_path)
    ahead = CacheAhead("R2", budget=100)
    assert ahead.stored(store) == frozenset()  # nothing read ahead yet
    assert ahead.lookup(ledger.reader(), _key(1)) is not None
    assert ahead.stored(store) == {digest}
    assert ahead.stored(store) == {digest}  # kept while the generation stays
    ledger.close()


def test_an_object_quarantined_since_is_no_longer_vouched_for(tmp_path: Path) -> None:
    ledger, store, digest = _setup(tmp_path)
    now = [100.0]
    ahead = CacheAhead("R2", budget=100, clock=lambda: now[0])
    ahead.lookup(ledger.reader(), _key(1))
    assert digest in ahead.stored(store)
    with sqlite3.connect(tmp_path / "objects" / "pack.db") as conn:
        (data,) = conn.execute("SELECT data FROM objects WHERE digest = ?", (digest,)).fetchone()
        flipped = bytes([data[0] ^ 1]) + data[1:]
        conn.execute("UPDATE objects SET data = ? WHERE digest = ?", (flipped, digest))
    with pytest.raises(IntegrityError):
        store.get_bytes(digest)  # quarantined: the generation changes
    assert not store.exists(digest)
    # The generation is read again once MAX_DELAY_S passed since it was last read.
    now[0] += MAX_DELAY_S / 2
    assert digest in ahead.stored(store)
    now[0] += MAX_DELAY_S
    assert digest not in ahead.stored(store)
    ledger.close()


def test_another_store_is_always_asked(tmp_path: Path) -> None:
    ledger, _, _ = _setup(tmp_path)
    ahead = CacheAhead("R2", budget=100)
    ahead.lookup(ledger.reader(), _key(1))
    assert ahead.stored(MemoryStore()) == frozenset()
    ledger.close()
