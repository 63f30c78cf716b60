"""The audit page and API: chain status, the last checkpoint, and audit bundles."""

from __future__ import annotations

import re
import sqlite3
from typing import TYPE_CHECKING

import pytest

from pipetrail.governance.audit_trail import make_checkpoint
from pipetrail.governance.bundle_check import verify_bundle
from pipetrail.governance.keys import load_signer
from pipetrail.governance.witness import Witness

if TYPE_CHECKING:
    from pathlib import Path

    from tests.integration.server.conftest import Served

pytestmark = pytest.mark.integration


def _keep_checkpoint(served: Served) -> tuple[Path, int]:
    """Configure [audit] checkpoints and sign one there as alice; its size."""
    witness_dir = served.root.parent / "witness"
    witness_dir.mkdir()
    with (served.root / "pipetrail.toml").open("a") as toml:
        toml.write('\n[audit]\ncheckpoints = "../witness"\n')
    signer = load_signer("alice", folder=served.homes / "alice")
    checkpoint, note = make_checkpoint(served.project.ledger.db, signer)
    witness = Witness(witness_dir)
    witness.write(checkpoint, note, signer="alice")
    witness.add_key("alice", signer.public_key)
    return witness_dir, checkpoint.size


def test_the_audit_page_shows_a_verified_chain_and_no_checkpoint_setting(served: Served) -> None:
    html = served.client("vic").get("/audit").text
    chain = html[html.index('id="ledger"') : html.index('id="checkpoints"')]
    assert "verifies</span> (" in chain
    assert "agree with the events" in chain
    assert "set [audit] checkpoints" in html
    assert "Download the bundle" not in html  # a viewer may not export bundles


def test_the_last_checkpoint_is_shown_and_checked_against_the_ledger(served: Served) -> None:
    _, size = _keep_checkpoint(served)
    html = served.client("vic").get("/audit").text
    assert "the ledger is consistent with all 1 checkpoint(s)" in html
    assert re.search(rf"Last checkpoint</dt>\s*<dd>{size} events at", html)
    api = served.client("vic").get("/api/v1/audit/checkpoints").json()
    assert api["chain"]["ok"] is True
    assert api["checkpoints"]["ok"] is True
    assert api["checkpoints"]["newest"]["size"] == size


def test_an_edited_event_shows_as_a_broken_chain_and_unchecked_checkpoints(
    served: Served,
) -> None:
    _keep_checkpoint(served)
    database = served.project.config.metadata_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as db:
        db.execute(
            "UPDATE events SET payload = replace(payload, '\"rows\"', '\"Rows\"') WHERE seq = "
            "(SELECT min(seq) FROM events WHERE payload LIKE '%\"rows\"%')"
        )
    answer = served.client("vic").get("/api/v1/audit/checkpoints").json()
    assert answer["chain"]["chain_ok"] is False
    assert answer["chain"]["first_bad_seq"] is not None
    assert answer["checkpoints"]["ok"] is False
    html = served.client("vic").get("/audit").text
    assert f"broken at event {answer['chain']['first_bad_seq']}" in html
    assert "the ledger itself does not verify" in html


def test_an_approver_with_a_server_held_key_downloads_a_bundle_that_verifies_offline(
    served: Served, tmp_path: Path
) -> None:
    run = served.runs[0]
    bob = served.client("bob")
    page = bob.get("/audit").text
    assert '<label for="bundle-ref">Run or model</label>' in page
    answer = bob.get("/api/v1/audit/bundle", params={"ref": run})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/x-tar"
    assert f'filename="audit-{run}.tar"' in answer.headers["content-disposition"]
    saved = tmp_path / "bundle.tar"
    saved.write_bytes(answer.content)
    report = verify_bundle(saved)
    assert report.ok, report.problems
    assert report.scope["name"] == run
    from_page = bob.get("/audit/bundle", params={"ref": run})
    assert from_page.status_code == 200
    assert from_page.content[:100] == answer.content[:100]  # the same tar layout


def test_a_bundle_is_refused_by_role_and_without_a_server_held_key(served: Served) -> None:
    run = served.runs[0]
    for who in ("vic", "rita"):
        refused = served.client(who).get("/api/v1/audit/bundle", params={"ref": run})
        assert refused.status_code == 403
        assert f"{who} may not export audit bundles" in refused.json()["detail"]
    no_key = served.client("carol").get("/api/v1/audit/bundle", params={"ref": run})
    assert no_key.status_code == 403
    assert "holds no signing key for carol" in no_key.json()["detail"]
    unknown = served.client("bob").get("/api/v1/audit/bundle", params={"ref": "nosuchrun"})
    assert unknown.status_code == 404


def test_a_bundle_made_by_the_server_keeps_its_checkpoint_in_the_witness(served: Served) -> None:
    witness_dir, size = _keep_checkpoint(served)
    served.gov("alice").grant("vic", "researcher")  # the ledger grows past the checkpoint
    kept_before = {p.name for p in witness_dir.iterdir()}
    answer = served.client("bob").get("/api/v1/audit/bundle", params={"ref": served.runs[0]})
    assert answer.status_code == 200, answer.text
    new = {p.name for p in witness_dir.iterdir()} - kept_before
    assert len(new) == 1
    (note,) = new
    assert answer.headers["x-pipetrail-checkpoint-kept"].endswith(note)
    assert int(note.split("-")[0]) == served.project.reader().event_count() > size
    # The audit page checks the ledger against it like any other kept checkpoint: bob's
    # key is not trusted there yet, then it is.
    checked = served.client("vic").get("/api/v1/audit/checkpoints").json()["checkpoints"]
    assert checked["ok"] is False
    assert [f["where"].rsplit("/", 1)[-1] for f in checked["failures"]] == [note]
    Witness(witness_dir).add_key("bob", load_signer("bob", folder=served.signing).public_key)
    checked = served.client("vic").get("/api/v1/audit/checkpoints").json()["checkpoints"]
    assert checked["ok"] is True
    assert checked["checked"] == 2
    assert checked["newest"]["size"] == int(note.split("-")[0])


def test_a_bundle_without_a_witness_setting_writes_no_checkpoint_anywhere(served: Served) -> None:
    before = set(served.root.parent.iterdir())
    answer = served.client("bob").get("/api/v1/audit/bundle", params={"ref": served.runs[0]})
    assert answer.status_code == 200
    assert "x-pipetrail-checkpoint-kept" not in answer.headers
    assert set(served.root.parent.iterdir()) == before
