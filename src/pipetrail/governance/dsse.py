"""DSSE envelopes (Dead Simple Signing Envelope, v1): a signed in-toto statement.

An envelope is JSON: ``payloadType``, ``payload`` (the statement's bytes in base64) and
``signatures`` (``keyid``, ``sig`` in base64). What is signed is not the payload alone but
its pre-authentication encoding, ``DSSEv1 LEN(type) type LEN(body) body`` with lengths in
ASCII decimal and single spaces between, so the type cannot be swapped under a signature.
Keys are pipetrail users' Ed25519 keys; ``keyid`` is the key's id
(:attr:`~pipetrail.governance.keys.PublicKey.key_id`).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.errors import IntegrityError
from pipetrail.governance.keys import verify_signature

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pipetrail.governance.keys import PublicKey, Signer

__all__ = ["INTOTO_PAYLOAD_TYPE", "Envelope", "open_envelope", "pae", "sign_envelope"]

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, body: bytes) -> bytes:
    """The pre-authentication encoding DSSE signs."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(body), body)


@dataclass(frozen=True)
class Envelope:
    """A verified envelope: its payload and who signed it."""

    payload_type: str
    payload: bytes
    signed_by: tuple[str, ...]

    def statement(self) -> Any:
        """The payload parsed as JSON."""
        return json.loads(self.payload)


def sign_envelope(body: bytes, signer: Signer, payload_type: str = INTOTO_PAYLOAD_TYPE) -> str:
    """Return the JSON text of a DSSE envelope of ``body`` signed by ``signer``."""
    envelope = {
        "payload": base64.b64encode(body).decode("ascii"),
        "payloadType": payload_type,
        "signatures": [
            {"keyid": signer.public_key.key_id, "sig": signer.sign(pae(payload_type, body))}
        ],
    }
    return json.dumps(envelope, indent=2, sort_keys=True) + "\n"


def open_envelope(
    text: str | bytes, keys: Iterable[tuple[str, PublicKey]], *, where: str
) -> Envelope:
    """Verify a DSSE envelope against known keys; return its payload and signers.

    Every signature whose ``keyid`` names a known key must verify; at least one must.

    Raises:
        IntegrityError: not an envelope, no signature by a known key, or a signature
            that does not verify; the message names ``where`` and the reason.
    """

    def refuse(reason: str) -> IntegrityError:
        return IntegrityError(f"attestation {where}: {reason}")

    try:
        data = json.loads(text)
        payload_type = data["payloadType"]
        body = base64.b64decode(data["payload"], validate=True)
        signatures = data["signatures"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise refuse("not a DSSE envelope (payloadType, payload, signatures)") from None
    if not isinstance(payload_type, str) or not isinstance(signatures, list) or not signatures:
        raise refuse("not a DSSE envelope: no signatures")
    known = {key.key_id: (name, key) for name, key in keys}
    signed_by = []
    for entry in signatures:
        if not isinstance(entry, dict) or not isinstance(entry.get("sig"), str):
            raise refuse("a signature entry is malformed")
        found = known.get(str(entry.get("keyid")))
        if found is None:
            continue
        name, key = found
        if not verify_signature(key, pae(payload_type, body), entry["sig"]):
            raise refuse(f"the signature by {name} does not verify: the payload was changed")
        signed_by.append(name)
    if not signed_by:
        raise refuse("no signature by a known key")
    return Envelope(payload_type, body, tuple(signed_by))
