"""None and bytes are bound through identity adapters: the same values, no failed lookups."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest

from pipetrail.core import sqlite_binding
from pipetrail.ledger.ledger import Ledger

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

_NONE = (type(None), sqlite3.PrepareProtocol)
_BYTES = (bytes, sqlite3.PrepareProtocol)


@pytest.fixture
def fresh_adapters(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[object, object]]:
    """The process's adapters without the two (put back after), bind_plainly not called."""
    adapters: dict[object, object] = sqlite3.adapters  # the registry sqlite3 binds through
    saved = {key: adapters.pop(key) for key in (_NONE, _BYTES) if key in adapters}
    monkeypatch.setattr(sqlite_binding, "_DONE", False)
    yield adapters
    for key in (_NONE, _BYTES):
        adapters.pop(key, None)
    adapters.update(saved)


def test_opening_a_ledger_registers_the_identity_adapters(
    tmp_path: Path, fresh_adapters: dict[object, object]
) -> None:
    ledger = Ledger.open(f"sqlite:///{tmp_path / 'ledger.db'}", actor="tester")
    assert ledger.db.rows("SELECT 1") == [(1,)]  # the connection is open
    assert _NONE in fresh_adapters
    assert _BYTES in fresh_adapters
    ledger.close()


def test_values_are_bound_as_before(fresh_adapters: dict[object, object]) -> None:
    sqlite_binding.bind_plainly()
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE t (a, b, c)")

    class Raw(bytes):
        pass

    data = b"\x00\xffbytes"
    connection.execute("INSERT INTO t VALUES (?, ?, ?)", (None, data, Raw(b"sub")))
    row = connection.execute("SELECT typeof(a), typeof(b), b, typeof(c), c FROM t").fetchone()
    assert row == ("null", "blob", data, "blob", b"sub")
    connection.close()


def test_an_adapter_the_process_registered_is_kept(fresh_adapters: dict[object, object]) -> None:
    def own(value: bytes) -> str:
        return value.hex()

    fresh_adapters[_BYTES] = own
    sqlite_binding.bind_plainly()
    assert fresh_adapters[_BYTES] is own
    assert _NONE in fresh_adapters
