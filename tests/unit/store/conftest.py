"""Fixtures for the store unit tests: a store per implementation, a fresh registry."""

from __future__ import annotations

import tempfile
from typing import TYPE_CHECKING, Any, Protocol

import pytest

from pipetrail.hashing import is_digest
from pipetrail.store import ContentStore, LocalStore, MemoryStore, SerializerRegistry

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

STORES: list[tuple[str, Callable[[Path], ContentStore]]] = [
    ("memory", lambda tmp_path: MemoryStore()),
    ("local", lambda tmp_path: LocalStore(tmp_path / "store", small_objects=0)),
    ("local-packed", lambda tmp_path: LocalStore(tmp_path / "store")),
]


class RoundTrip(Protocol):
    def __call__(
        self, registry: SerializerRegistry, store: ContentStore, value: Any, **kw: Any
    ) -> Any: ...


@pytest.fixture(autouse=True)
def _temp_dirs_inside_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # file/folder loads from a MemoryStore return new temp folders owned by the caller;
    # keep the ones these tests create inside tmp_path, which pytest cleans up.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))


@pytest.fixture(params=[f for _, f in STORES], ids=[n for n, _ in STORES])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ContentStore:
    factory: Callable[[Path], ContentStore] = request.param
    return factory(tmp_path)


@pytest.fixture
def registry() -> SerializerRegistry:
    """A registry with the built-ins, independent of the shared default one."""
    return SerializerRegistry.with_builtins()


def _round_trip(registry: SerializerRegistry, store: ContentStore, value: Any, **kw: Any) -> Any:
    record = registry.dump(value, store, **kw)
    assert is_digest(record.digest)
    assert is_digest(record.blob)
    assert store.size(record.blob) == record.size
    return registry.load(record, store)


@pytest.fixture
def round_trip() -> RoundTrip:
    """Dump a value, check the record's basics, and load it back."""
    return _round_trip
