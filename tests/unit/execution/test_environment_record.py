"""When a process reuses the environment record it stored last (execution.environment_record).

The record is reused only for a snapshot that stores the same bytes: values ``==`` holds
equal but JSON writes differently (``1``, ``1.0``, ``True``; ``0.0`` and ``-0.0``) are
stored again. Real LocalStore and serializer registry.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.execution.environment_record import snapshot_identity, stored_environment
from pipetrail.store import LocalStore, default_registry

if TYPE_CHECKING:
    from pathlib import Path


def _snapshot(value: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "distributions": [{"name": f"pkg-{i}", "version": "1.0"} for i in range(50)],
        "memory": {"total_bytes": value},
    }


@pytest.mark.parametrize(
    ("one", "other"),
    [(1, 1.0), (1, True), (0, False), (0.0, -0.0), (float("nan"), 1.0), (None, 0), ("1", 1)],
)
def test_values_equal_under_eq_but_stored_differently_differ(one: Any, other: Any) -> None:
    assert snapshot_identity(_snapshot(one)) != snapshot_identity(_snapshot(other))


def test_equal_snapshots_built_apart_are_the_same() -> None:
    assert snapshot_identity(_snapshot(7)) == snapshot_identity(_snapshot(7))
    nan = float("nan")
    assert snapshot_identity(_snapshot(nan)) == snapshot_identity(_snapshot(float("nan")))


def test_equal_snapshots_are_the_same_whatever_objects_they_share() -> None:
    shared = _snapshot(7)
    name = "".join(["pkg", "-shared"])  # not interned
    shared["distributions"] = [{"name": name, "version": name}] * 3
    fresh = _snapshot(7)
    fresh["distributions"] = [
        {"name": "".join(["pkg-", "shared"]), "version": sys.intern("pkg-shared")} for _ in range(3)
    ]
    assert snapshot_identity(shared) == snapshot_identity(fresh)


def test_a_snapshot_of_other_types_falls_back_to_repr() -> None:
    class Name(str):
        __slots__ = ()

    odd = _snapshot(1)
    odd["python"] = {"executable": Name("python")}
    found = snapshot_identity(odd)
    assert found == repr(odd)
    assert found != snapshot_identity(_snapshot(1))


def test_the_record_is_reused_only_for_a_snapshot_storing_the_same_bytes(tmp_path: Path) -> None:
    store, registry = LocalStore(tmp_path / "objects"), default_registry()
    first = stored_environment(_snapshot(1), registry, store)
    assert stored_environment(_snapshot(1), registry, store) is first

    as_float = stored_environment(_snapshot(1.0), registry, store)
    assert as_float.digest != first.digest
    assert json.loads(store.get_bytes(as_float.blob))["memory"]["total_bytes"] == 1.0
    as_bool = stored_environment(_snapshot(True), registry, store)
    assert as_bool.digest not in {first.digest, as_float.digest}
    assert stored_environment(_snapshot(1), registry, store).digest == first.digest
