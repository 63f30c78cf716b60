"""A ledger that refuses to open (its schema is newer than the code) leaves nothing open."""

from __future__ import annotations

import gc
import os
import warnings
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from pipetrail.errors import LedgerError
from pipetrail.ledger.ledger import Ledger, sqlite_url

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.integration


def _from_the_future(url: str) -> None:
    Ledger.open(url, actor="alice").close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()


def _refused(url: str) -> None:
    with pytest.raises(LedgerError, match=r"'9999'.*upgrade pipetrail"):
        Ledger.open(url, actor="alice")


def _open_files(path: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(path)):
            found.append(target)
    return found


@pytest.mark.postgres
def test_a_refused_postgresql_ledger_leaves_no_connection_open(postgres_url: str) -> None:
    _from_the_future(postgres_url)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        _refused(postgres_url)
        gc.collect()  # an engine or connection dropped while open says so here
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


def test_a_refused_sqlite_ledger_leaves_no_file_open(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    url = sqlite_url(path)
    _from_the_future(url)
    gc.collect()
    gc.disable()  # what is left open must be closed by the refusal, not by a collection
    try:
        _refused(url)
        assert _open_files(path) == []
    finally:
        gc.enable()
