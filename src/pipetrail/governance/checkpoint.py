"""Checkpoints of the ledger's Merkle tree, as signed notes (C2SP checkpoint format).

A checkpoint states "the ledger of project ORIGIN had SIZE events and this root hash" at
a time, and is signed by a user's Ed25519 key. Its text is a C2SP checkpoint: the origin
line, the tree size in decimal, the root hash in base64, then extension lines (ours:
``time <UTC timestamp>``); a blank line; then one signature line per signer,
``— NAME BASE64(KEY_HASH || SIGNATURE)``, where the key hash is the first 4 bytes of
SHA-256(name || 0x0A || 0x01 || public key) and the Ed25519 signature covers the note's
text up to and including its last newline. Tools that verify C2SP notes read it as is.

Verifying a checkpoint needs only the signer's public key (:func:`open_checkpoint`); it
never trusts the note's own claim of who signed it: a line counts only when its name and
key hash match a key the verifier was given, and then its signature must verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipetrail.errors import CheckpointError
from pipetrail.governance.keys import verify_signature

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from pipetrail.governance.keys import PublicKey, Signer

if TYPE_CHECKING:
    Refusal = Callable[[str], CheckpointError]

__all__ = [
    "Checkpoint",
    "note_key_hash",
    "open_checkpoint",
    "sign_checkpoint",
]

_DASH = "\u2014 "
_MAX_NOTE = 1 << 20
_MAX_SIGNATURES = 100
_ORIGIN = re.compile(r"[^\s+]{1,255}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint states about a ledger.

    Attributes:
        origin: the project's ledger name (``pipetrail/`` and the project id).
        size: the number of events (leaves).
        root: the Merkle root of those events (32 bytes).
        time: when it was made (UTC, ``YYYY-MM-DDTHH:MM:SSZ``).
    """

    origin: str
    size: int
    root: bytes
    time: str

    def text(self) -> str:
        """The note text the signatures cover."""
        if not _ORIGIN.fullmatch(self.origin):
            raise CheckpointError(f"{self.origin!r} cannot be a checkpoint origin", seq=0)
        root = base64.b64encode(self.root).decode("ascii")
        return f"{self.origin}\n{self.size}\n{root}\ntime {self.time}\n"


def note_key_hash(name: str, public_key: PublicKey) -> bytes:
    """The 4-byte key hash of an Ed25519 key in signed notes."""
    return hashlib.sha256(name.encode("utf-8") + b"\n\x01" + public_key.raw).digest()[:4]


def sign_checkpoint(checkpoint: Checkpoint, signer: Signer) -> str:
    """Return the signed note of ``checkpoint``, signed by ``signer`` (key name: its user)."""
    text = checkpoint.text()
    signature = base64.b64decode(signer.sign(text.encode("utf-8")))
    blob = base64.b64encode(note_key_hash(signer.name, signer.public_key) + signature)
    return f"{text}\n{_DASH}{signer.name} {blob.decode('ascii')}\n"


def open_checkpoint(note: str, keys: Iterable[tuple[str, PublicKey]], *, where: str) -> Checkpoint:
    """Verify a signed checkpoint against known keys and return what it states.

    Args:
        note: the note's text.
        keys: the (name, public key) pairs trusted to sign checkpoints.
        where: names the note in messages (a file path, a commit).

    Raises:
        CheckpointError: the note is malformed, signed by no known key, or a signature by
            a known key does not verify; the message names ``where`` and the reason.
    """

    def refuse(reason: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {where}: {reason}", seq=0)

    if len(note) > _MAX_NOTE:
        raise refuse("larger than 1 MiB; not a checkpoint")
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise refuse("holds control characters; not a checkpoint")
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise refuse("no blank line before signatures; not a signed note")
    text, lines = note[: cut + 1], note[cut + 2 :].splitlines()
    if not lines or len(lines) > _MAX_SIGNATURES:
        raise refuse("no signature lines (or more than 100)")
    trusted = {(name, note_key_hash(name, key)): key for name, key in keys}
    verified = False
    for line in lines:
        name, blob = _signature_line(line, refuse)
        key = trusted.get((name, blob[:4]))
        if key is None:
            continue  # a signer the verifier does not know (a witness's cosignature)
        signature = base64.b64encode(blob[4:]).decode("ascii")
        if not verify_signature(key, text.encode("utf-8"), signature):
            raise refuse(f"the signature by {name!r} does not verify: the text was changed")
        verified = True
    if not verified:
        names = ", ".join(sorted({_signature_line(line, refuse)[0] for line in lines}))
        raise refuse(f"signed by {names}, none of them a known key for this project")
    return _parse_text(text, refuse)


def _signature_line(line: str, refuse: Refusal) -> tuple[str, bytes]:
    parts = line.removeprefix(_DASH).split(" ")
    if not line.startswith(_DASH) or len(parts) != 2 or not parts[0]:
        raise refuse(f"malformed signature line {line[:40]!r}")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        blob = b""
    if len(blob) != 4 + 64:
        raise refuse(f"malformed signature of {parts[0]!r}")
    return parts[0], blob


def _parse_text(text: str, refuse: Refusal) -> Checkpoint:
    lines = text.splitlines()
    if len(lines) < 4 or not _ORIGIN.fullmatch(lines[0]) or not lines[1].isdigit():
        raise refuse("not a checkpoint: expected origin, size, root and time lines")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except (binascii.Error, ValueError):
        root = b""
    times = [line[5:] for line in lines[3:] if line.startswith("time ")]
    if len(root) != 32 or len(times) != 1 or not _TIME.fullmatch(times[0]):
        raise refuse("not a checkpoint: bad root hash or time line")
    if lines[1] != str(int(lines[1])):
        raise refuse("not a checkpoint: the size has leading zeros")
    return Checkpoint(origin=lines[0], size=int(lines[1]), root=root, time=times[0])
