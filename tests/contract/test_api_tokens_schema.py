"""Migration 0007 (the server's API tokens) on both backends: a store at 0006, as every
store before it was, is upgraded on open, keeping its events; tokens round-trip."""

from __future__ import annotations

import pytest

from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.api_tokens import (
    find_token,
    insert_token,
    list_tokens,
    mark_revoked,
    token_by_id,
)
from pipetrail.ledger.ledger import Ledger
from pipetrail.ledger.migrate import HEAD_REVISION, current_revision

pytestmark = pytest.mark.postgres


def _source(i: int) -> EventDraft:
    payload = {
        "run_id": "R1",
        "path": f"data/{i}.csv",
        "digest": "blake3:" + f"{i:064x}",
        "size": i,
        "mtime_ns": i,
        "observed_at": "2026-01-01T00:00:00.000000Z",
    }
    return EventDraft(EventKind.SOURCE_OBSERVED, payload, run_id="R1")


@pytest.mark.parametrize("revision", ["0005", "0006"])
def test_a_store_at_an_earlier_revision_is_upgraded_on_open(
    metadata_url: str, revision: str
) -> None:
    from alembic import command
    from alembic.config import Config

    ledger = Ledger.open(metadata_url, actor="tester")
    ledger.append([_source(i) for i in range(3)])
    config = Config()
    config.set_main_option("script_location", "pipetrail.ledger:migrations")
    with ledger.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
    assert current_revision(ledger.engine) == revision
    ledger.close()

    ledger = Ledger.open(metadata_url, actor="tester")  # upgrades on open
    assert current_revision(ledger.engine) == HEAD_REVISION
    ledger.append([_source(9)])
    report = ledger.verify()
    assert report.ok, report
    assert report.checked == 4
    ledger.close()


def test_tokens_round_trip_and_revoke_once(metadata_url: str) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    row = {
        "token_id": "0123456789ab",
        "digest": "blake3:" + "ab" * 32,
        "user_name": "alice",
        "label": "ci",
        "created_at": "2026-01-01T00:00:00.000000Z",
        "created_by": "alice",
        "expires_at": "2026-02-01T00:00:00.000000Z",
    }
    insert_token(ledger.db, row)
    reader = ledger.reader()
    assert find_token(reader, row["digest"])["user_name"] == "alice"  # type: ignore[index]
    assert find_token(reader, "blake3:" + "cd" * 32) is None
    assert [r["token_id"] for r in list_tokens(reader, "alice")] == ["0123456789ab"]
    assert list_tokens(reader, "bob") == []
    first = mark_revoked(ledger.db, "0123456789ab", by="bob", at="2026-01-02T00:00:00.000000Z")
    again = mark_revoked(ledger.db, "0123456789ab", by="carol", at="2026-01-03T00:00:00.000000Z")
    assert first is not None
    assert again is not None
    assert (again["revoked_by"], again["revoked_at"]) == ("bob", "2026-01-02T00:00:00.000000Z")
    assert mark_revoked(ledger.db, "ffffffffffff", by="bob", at="x") is None
    assert token_by_id(reader, "ffffffffffff") is None
    ledger.close()
