"""Signed checkpoints in the C2SP signed-note format: made, verified, and refused."""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import CheckpointError
from pipetrail.governance.checkpoint import (
    Checkpoint,
    note_key_hash,
    open_checkpoint,
    sign_checkpoint,
)
from pipetrail.governance.keys import create_key, load_signer, verify_signature

if TYPE_CHECKING:
    from pathlib import Path

ROOT = hashlib.sha256(b"root").digest()
POINT = Checkpoint("pipetrail/0123abcd", 42, ROOT, "2026-12-06T07:00:00Z")


def test_a_checkpoint_is_a_c2sp_signed_note_and_verifies(tmp_path: Path) -> None:
    public = create_key("alice", folder=tmp_path)
    note = sign_checkpoint(POINT, load_signer("alice", folder=tmp_path))
    text, _, signature_line = note.partition("\n\n")
    assert text + "\n" == POINT.text()
    assert text.splitlines() == [
        "pipetrail/0123abcd",
        "42",
        base64.b64encode(ROOT).decode(),
        "time 2026-12-06T07:00:00Z",
    ]
    assert signature_line.startswith("\u2014 alice ")
    blob = base64.b64decode(signature_line.split(" ")[2])
    key_hash = hashlib.sha256(b"alice\n\x01" + public.raw).digest()[:4]
    assert blob[:4] == key_hash == note_key_hash("alice", public)
    # the Ed25519 signature covers the text up to and including its last newline
    signature = base64.b64encode(blob[4:]).decode()
    assert verify_signature(public, POINT.text().encode(), signature)
    assert open_checkpoint(note, [("alice", public)], where="cp-1") == POINT


def test_forged_foreign_and_malformed_checkpoints_are_refused(tmp_path: Path) -> None:
    alice = create_key("alice", folder=tmp_path)
    create_key("mallory", folder=tmp_path)
    note = sign_checkpoint(POINT, load_signer("alice", folder=tmp_path))
    keys = [("alice", alice)]

    changed = note.replace("\n42\n", "\n41\n")
    with pytest.raises(CheckpointError, match="cp: the signature by 'alice' does not verify"):
        open_checkpoint(changed, keys, where="cp")
    forged = sign_checkpoint(POINT, load_signer("mallory", folder=tmp_path))
    with pytest.raises(CheckpointError, match="signed by mallory, none of them a known key"):
        open_checkpoint(forged, keys, where="cp")
    # mallory's key under alice's name: the key hash does not match alice's key
    renamed = forged.replace("\u2014 mallory ", "\u2014 alice ")
    with pytest.raises(CheckpointError, match="none of them a known key"):
        open_checkpoint(renamed, keys, where="cp")
    for bad in ["", "hello\n", note.replace("\n\n", "\n"), note + "\x07", note[:-5] + "\n"]:
        with pytest.raises(CheckpointError, match=r"^checkpoint cp: "):
            open_checkpoint(bad, keys, where="cp")


def test_a_cosignature_by_an_unknown_witness_is_ignored(tmp_path: Path) -> None:
    alice = create_key("alice", folder=tmp_path)
    witness = create_key("witness", folder=tmp_path)
    note = sign_checkpoint(POINT, load_signer("alice", folder=tmp_path))
    cosigned = sign_checkpoint(POINT, load_signer("witness", folder=tmp_path))
    both = note + cosigned.partition("\n\n")[2]
    assert open_checkpoint(both, [("alice", alice)], where="cp") == POINT
    assert open_checkpoint(both, [("witness", witness)], where="cp") == POINT
