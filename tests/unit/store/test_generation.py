"""A local store's generation changes whenever an object leaves it, and only then (ADR 0032).

Every way pipetrail takes an object out of a ``LocalStore`` is exercised on a real
store: a collection (loose files, pack rows, segment slices), quarantine on read and on
``verify`` (a loose file, a pack row, a segment slice). Puts, reads of intact objects,
an intact ``verify`` and a collection with nothing to remove leave it alone.
"""

from __future__ import annotations

import os
import sqlite3
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import IntegrityError, StoreError
from pipetrail.store import LocalStore
from pipetrail.store.gc import Garbage, find_garbage, remove_garbage
from pipetrail.store.generation import GENERATION_FILE, bump_generation, read_generation

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

KIB = 1024


def _flip_file(path: Path, offset: int = 0) -> None:
    path.chmod(0o644)
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))


def _flip_row(root: Path, digest: str) -> None:
    with sqlite3.connect(root / "pack.db") as conn:
        (data,) = conn.execute("SELECT data FROM objects WHERE digest = ?", (digest,)).fetchone()
        flipped = bytes([data[0] ^ 1]) + data[1:]
        conn.execute("UPDATE objects SET data = ? WHERE digest = ?", (flipped, digest))


def _flip_segment(root: Path, digest: str) -> None:
    with sqlite3.connect(root / "pack.db") as conn:
        segment, start = conn.execute(
            "SELECT segment, start FROM segment_objects WHERE digest = ?", (digest,)
        ).fetchone()
    _flip_file(root / "segments" / segment, start + 7)


def _stored(tmp_path: Path) -> tuple[LocalStore, dict[str, str]]:
    """A store holding one object in each place: loose, pack row, segment slice."""
    store = LocalStore(tmp_path / "objects")
    folder = tmp_path / "src"
    folder.mkdir()
    for i in range(8):  # one batch of medium files: a segment
        (folder / f"m{i}.bin").write_bytes(os.urandom(20 * KIB))
    results = store.put_files([(folder / f"m{i}.bin", None) for i in range(8)])
    store.sync()
    digests = {
        "loose": store.put_bytes(os.urandom(2 * 1024 * KIB)),
        "packed": store.put_bytes(b"a small object"),
        "segment": results[0][0],
    }
    with sqlite3.connect(store.root / "pack.db") as conn:  # the set-up is as described
        assert conn.execute(
            "SELECT count(*) FROM segment_objects WHERE digest = ?", (digests["segment"],)
        ).fetchone() == (1,)
    return store, digests


def test_a_token_is_made_once_and_read_back(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    token = store.generation()
    assert token is not None
    assert len(token) == 32
    assert set(token) <= set("0123456789abcdef")
    assert store.generation() == token
    assert (tmp_path / "objects" / GENERATION_FILE).read_text() == token


def test_no_store_folder_no_token_and_nothing_created(tmp_path: Path) -> None:
    assert read_generation(str(tmp_path / "absent")) is None
    assert not (tmp_path / "absent").exists()


def test_a_damaged_token_file_is_replaced(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    (tmp_path / "objects" / GENERATION_FILE).write_text("not a token")
    token = store.generation()
    assert token is not None
    assert len(token) == 32
    assert store.generation() == token


def test_a_removed_token_file_gives_a_new_generation(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    before = store.generation()
    (tmp_path / "objects" / GENERATION_FILE).unlink()  # what ADR 0032 says after a restore
    assert store.generation() not in (None, before)


def test_bump_gives_a_new_token(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "objects")
    before = store.generation()
    assert bump_generation(str(store.root)) != before
    assert store.generation() != before
    assert [p.name for p in store.root.iterdir() if p.name.startswith(GENERATION_FILE)] == [
        GENERATION_FILE
    ]


def test_a_bump_that_cannot_be_written_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="record a new store generation"):
        bump_generation(str(tmp_path / "absent"))


def test_puts_reads_and_intact_verification_keep_the_generation(tmp_path: Path) -> None:
    store, digests = _stored(tmp_path)
    before = store.generation()
    store.put_bytes(b"another small object")
    for digest in digests.values():
        store.get_bytes(digest)
        assert store.verify(digest)
    store.local_path(digests["packed"])  # a loose copy of a packed object: added, not removed
    assert store.generation() == before


def test_a_collection_with_nothing_to_remove_keeps_the_generation(tmp_path: Path) -> None:
    store, _ = _stored(tmp_path)
    before = store.generation()
    garbage = find_garbage(store.root, set(store.iter_digests()), grace=0)
    remove_garbage(store.root, garbage)
    remove_garbage(store.root, Garbage())
    assert store.generation() == before


@pytest.mark.parametrize("kind", ["loose", "packed", "segment"])
def test_a_collection_that_removes_an_object_changes_the_generation(
    tmp_path: Path, kind: str
) -> None:
    store, digests = _stored(tmp_path)
    before = store.generation()
    keep = set(store.iter_digests()) - {digests[kind]}
    garbage = find_garbage(store.root, keep, grace=0)
    assert digests[kind] in {*garbage.loose, *garbage.packed, *garbage.segment}
    remove_garbage(store.root, garbage)
    assert not store.exists(digests[kind])
    assert store.generation() != before


def _read(store: LocalStore, digest: str) -> None:
    with pytest.raises(IntegrityError):
        store.get_bytes(digest)


def _verify(store: LocalStore, digest: str) -> None:
    assert not store.verify(digest)


def _open(store: LocalStore, digest: str) -> None:
    with pytest.raises(IntegrityError):
        store.open(digest)


@pytest.mark.parametrize("kind", ["loose", "packed", "segment"])
@pytest.mark.parametrize("how", [_read, _verify, _open], ids=["read", "verify", "open"])
def test_quarantine_changes_the_generation(
    tmp_path: Path, kind: str, how: Callable[[LocalStore, str], None]
) -> None:
    store, digests = _stored(tmp_path)
    digest = digests[kind]
    if kind == "loose":
        _flip_file(store.root / digest[7:9] / digest[9:])
    elif kind == "packed":
        _flip_row(store.root, digest)
    else:
        _flip_segment(store.root, digest)
    fresh = LocalStore(store.root)  # nothing remembered as verified
    before = fresh.generation()
    how(fresh, digest)
    assert not fresh.exists(digest)
    assert fresh.generation() != before


class _Killed(BaseException):
    """The process dies: nothing after this point of a removal runs."""


@pytest.mark.parametrize("kind", ["loose", "packed", "segment"])
def test_quarantine_killed_right_after_the_removal_has_changed_the_generation(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Killed between taking the object out and the bump after it: the token must have
    # changed already, or every later observation trusts the object to be there.
    store, digests = _stored(tmp_path)
    digest = digests[kind]
    if kind == "loose":
        _flip_file(store.root / digest[7:9] / digest[9:])
    elif kind == "packed":
        _flip_row(store.root, digest)
    else:
        _flip_segment(store.root, digest)

    def bump_unless_gone(root: str) -> str:
        if not LocalStore(store.root).exists(digest):
            raise _Killed
        return bump_generation(root)

    monkeypatch.setattr("pipetrail.store.loose.bump_generation", bump_unless_gone)
    monkeypatch.setattr("pipetrail.store.pack.bump_generation", bump_unless_gone)
    fresh = LocalStore(store.root)
    before = fresh.generation()
    with pytest.raises(_Killed):
        _read(fresh, digest)
    assert not LocalStore(store.root).exists(digest)
    assert read_generation(str(store.root)) != before
