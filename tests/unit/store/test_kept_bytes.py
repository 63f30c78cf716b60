"""Bytes kept from a dump, held while needed and within a size limit, read through a view."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from pipetrail.hashing import digest_bytes
from pipetrail.store import LocalStore, MemoryStore, SerializerRegistry
from pipetrail.store.serializers.kept_bytes import BytesKeeper, KeptBytes, kept_view

if TYPE_CHECKING:
    from pathlib import Path


def test_the_keeper_stores_through_and_keeps_small_objects(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store", small_objects=0)
    keeper = BytesKeeper(store, limit=4)
    small = keeper.store.put_bytes(b"abc")
    large = keeper.store.put_bytes(b"abcdef")
    assert keeper.kept == {small: b"abc"}
    assert store.get_bytes(small) == b"abc"
    assert store.get_bytes(large) == b"abcdef"
    # Anything else is the real store's own.
    assert keeper.store.exists(large)
    assert keeper.store.local_path(large) == store.local_path(large)


def test_the_view_reads_kept_objects_from_memory_and_the_rest_from_the_store(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "store", small_objects=0)
    on_disk = store.put_bytes(b"on disk")
    kept = digest_bytes(b"only in memory")
    view = kept_view(store, {kept: b"only in memory"})
    assert view.get_bytes(kept) == b"only in memory"
    with view.open(kept) as f:
        assert f.read() == b"only in memory"
    assert view.local_path(kept) is None
    assert view.exists(kept)
    assert view.size(kept) == len(b"only in memory")
    assert view.get_bytes(on_disk) == b"on disk"
    assert view.local_path(on_disk) == store.local_path(on_disk)
    assert kept_view(store, {}) is store


def test_values_load_from_kept_bytes_without_the_store(tmp_path: Path) -> None:
    registry = SerializerRegistry.with_builtins()
    written = MemoryStore()
    keeper = BytesKeeper(written)
    values = [
        {"a": [1, 2]},
        np.arange(4),
        pd.DataFrame({"x": [1, 2]}),
        b"raw",
    ]
    records = [registry.dump(value, keeper.store) for value in values]
    # An empty store: every read must come from the kept bytes.
    view = kept_view(MemoryStore(), keeper.kept)
    loaded = [registry.load(record, view) for record in records]
    assert loaded[0] == {"a": [1, 2]}
    np.testing.assert_array_equal(loaded[1], np.arange(4))
    pd.testing.assert_frame_equal(loaded[2], values[2])
    assert loaded[3] == b"raw"


def test_kept_bytes_are_dropped_with_their_last_holder() -> None:
    kept = KeptBytes(limit=100)
    kept.add("d1", b"x" * 10)
    kept.add("d1", b"x" * 10)
    kept.add("d2", b"y" * 5)
    assert kept.total == 15
    kept.release("d1")
    assert kept.get("d1") == b"x" * 10
    kept.release("d1")
    assert kept.get("d1") is None
    assert kept.total == 5
    kept.release("d1")  # nothing held: nothing happens
    kept.release("d2")
    assert len(kept) == 0
    assert kept.total == 0


def test_kept_bytes_stay_within_their_limit_oldest_first() -> None:
    kept = KeptBytes(limit=10)
    kept.add("old", b"a" * 4)
    kept.add("mid", b"b" * 4)
    kept.add("new", b"c" * 4)
    assert kept.get("old") is None
    assert kept.get("mid") == b"b" * 4
    assert kept.total == 8
    kept.add("huge", b"d" * 11)
    assert kept.get("huge") is None
    assert kept.total == 8
    kept.release("old")  # dropped already: nothing happens
    assert kept.total == 8
