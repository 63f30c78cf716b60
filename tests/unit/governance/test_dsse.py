"""DSSE envelopes: signed over the pre-authentication encoding, refused when changed."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import IntegrityError
from pipetrail.governance.dsse import INTOTO_PAYLOAD_TYPE, open_envelope, pae, sign_envelope
from pipetrail.governance.keys import create_key, load_signer, verify_signature

if TYPE_CHECKING:
    from pathlib import Path

STATEMENT = json.dumps({"_type": "https://in-toto.io/Statement/v1", "subject": []}).encode()


def test_pae_is_the_dsse_v1_encoding() -> None:
    assert pae("t", b"hello") == b"DSSEv1 1 t 5 hello"
    assert pae("", b"") == b"DSSEv1 0  0 "


def test_an_envelope_signs_the_encoding_and_verifies(tmp_path: Path) -> None:
    public = create_key("alice", folder=tmp_path)
    text = sign_envelope(STATEMENT, load_signer("alice", folder=tmp_path))
    data = json.loads(text)
    assert data["payloadType"] == INTOTO_PAYLOAD_TYPE
    assert base64.b64decode(data["payload"]) == STATEMENT
    (entry,) = data["signatures"]
    assert entry["keyid"] == public.key_id
    assert verify_signature(public, pae(INTOTO_PAYLOAD_TYPE, STATEMENT), entry["sig"])
    opened = open_envelope(text, [("alice", public)], where="a.json")
    assert opened.signed_by == ("alice",)
    assert opened.statement()["_type"] == "https://in-toto.io/Statement/v1"


def test_changed_foreign_and_malformed_envelopes_are_refused(tmp_path: Path) -> None:
    public = create_key("alice", folder=tmp_path)
    create_key("mallory", folder=tmp_path)
    keys = [("alice", public)]
    data = json.loads(sign_envelope(STATEMENT, load_signer("alice", folder=tmp_path)))
    changed = dict(data, payload=base64.b64encode(STATEMENT + b" ").decode())
    with pytest.raises(IntegrityError, match="signature by alice does not verify"):
        open_envelope(json.dumps(changed), keys, where="a.json")
    retyped = dict(data, payloadType="text/plain")
    with pytest.raises(IntegrityError, match="does not verify"):
        open_envelope(json.dumps(retyped), keys, where="a.json")
    other = sign_envelope(STATEMENT, load_signer("mallory", folder=tmp_path))
    with pytest.raises(IntegrityError, match="no signature by a known key"):
        open_envelope(other, keys, where="a.json")
    for bad in [
        "",
        "[]",
        "{}",
        json.dumps(dict(data, signatures=[])),
        json.dumps(dict(data, payload="!")),
    ]:
        with pytest.raises(IntegrityError, match=r"^attestation a\.json: "):
            open_envelope(bad, keys, where="a.json")
