"""Checkpoints of a ledger, and proofs about it: made, checked, printed.

:func:`make_checkpoint` states the ledger's size and Merkle root (docs/adr/0020) at a
time, signed by a user. :func:`verify_checkpoints` proves the current ledger consistent
with every checkpoint found: for a checkpoint of ``m`` events it computes, from the
stored tree, the consistency proof from ``m`` to the current size ``n`` and checks it
with nothing but hashes (:func:`~pipetrail.ledger.merkle.verify_consistency`) against the
checkpoint's signed root. What a failure means:

* the checkpoint is larger than the ledger: events were deleted from the end, or the
  database was restored from an older copy;
* the proof fails: the first ``m`` events are not those the checkpoint signed (rewritten,
  even with the chain recomputed; or rolled back, then appended to);
* two checkpoints that cannot both be prefixes of one ledger (same size, different roots;
  or one the ledger matches and a smaller one it does not): the ledger forked;
* a signature that does not verify, no signature by a trusted key, or another project's
  origin: the checkpoint itself is not to be trusted.

:func:`inclusion_proof` gives what an auditor needs to check offline that one event is
in the tree a checkpoint signed. The project's origin is ``pipetrail/`` and the first 32
hex digits of its first event's chain hash: two ledgers never share one.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pipetrail.errors import CheckpointError, GovernanceError, NotFoundError
from pipetrail.governance.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from pipetrail.governance.keys import check_name
from pipetrail.ledger.governance_reads import event_at, first_event_hash, head_seq
from pipetrail.ledger.merkle import verify_consistency
from pipetrail.ledger.merkle_store import ensure_tree, read_tree

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from pipetrail.governance.keys import PublicKey, Signer
    from pipetrail.governance.witness import FoundNote
    from pipetrail.ledger.driver import Driver

__all__ = [
    "USER_ENV",
    "CheckpointResult",
    "CheckpointsReport",
    "acting_user",
    "inclusion_proof",
    "ledger_origin",
    "make_checkpoint",
    "verify_checkpoints",
]

USER_ENV = "PIPETRAIL_USER"


def acting_user() -> str:
    """Who acts: ``$PIPETRAIL_USER``, else the operating system's user name (validated).

    Raises:
        IdentityError: the name cannot name a user (saying what is allowed).
    """
    name = os.environ.get(USER_ENV, "").strip()
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError, ImportError):
            name = ""
    if not name:
        raise GovernanceError(f"cannot tell who you are: set {USER_ENV} to your user name")
    return check_name(name)


def ledger_origin(db: Driver) -> str:
    """The project's checkpoint origin, from its first event.

    Raises:
        NotFoundError: the ledger has no events yet.
    """
    first = first_event_hash(db)
    if first is None:
        raise NotFoundError("the ledger has no events yet: there is nothing to checkpoint")
    return "pipetrail/" + first.removeprefix("blake3:")[:32]


def _size(db: Driver) -> int:
    return head_seq(db)


def make_checkpoint(db: Driver, signer: Signer) -> tuple[Checkpoint, str]:
    """Sign the ledger's current size and root; return the checkpoint and its note.

    Raises:
        NotFoundError: the ledger has no events yet.
    """
    ensure_tree(db)
    with db.snapshot():
        origin = ledger_origin(db)
        size = _size(db)
        root = read_tree(db).root(size)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    checkpoint = Checkpoint(origin=origin, size=size, root=root, time=now)
    return checkpoint, sign_checkpoint(checkpoint, signer)


@dataclass(frozen=True)
class CheckpointResult:
    """One checkpoint's verdict.

    Attributes:
        where: the file (and commit) it was found in.
        ok: whether the ledger is consistent with it.
        reason: why not (empty when ``ok``).
        size: the tree size it states (None when it could not be read).
        time: the time it states.
        root: its root hash, base64.
    """

    where: str
    ok: bool
    reason: str = ""
    size: int | None = None
    time: str | None = None
    root: str | None = None


@dataclass(frozen=True)
class CheckpointsReport:
    """Outcome of :func:`verify_checkpoints`.

    Attributes:
        origin: the ledger's origin.
        size: how many events the ledger holds.
        root: its current root, base64.
        results: one per checkpoint, in order (unreadable first, then by size and time).
    """

    origin: str
    size: int
    root: str
    results: tuple[CheckpointResult, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """Whether every checkpoint verified and the ledger is consistent with all."""
        return all(r.ok for r in self.results)

    @property
    def first_failure(self) -> CheckpointResult | None:
        """The first checkpoint that fails, in the report's order."""
        return next((r for r in self.results if not r.ok), None)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able data."""
        first = self.first_failure
        return {
            "ok": self.ok,
            "origin": self.origin,
            "size": self.size,
            "root": self.root,
            "checked": len(self.results),
            "first_failure": None if first is None else first.__dict__,
            "checkpoints": [r.__dict__ for r in self.results],
        }


def verify_checkpoints(
    db: Driver, notes: Sequence[FoundNote], keys: Iterable[tuple[str, PublicKey]]
) -> CheckpointsReport:
    """Prove the ledger consistent with every note in ``notes`` (see the module docstring).

    Reads one snapshot; the stored tree must already match the events (``audit verify``
    checks that first).
    """
    trusted = list(keys)
    with db.snapshot():
        origin = ledger_origin(db) if _size(db) else ""
        size = _size(db)
        reader = read_tree(db)
        unreadable: list[CheckpointResult] = []
        opened: list[tuple[FoundNote, Checkpoint]] = []
        for note in notes:
            try:
                opened.append((note, open_checkpoint(note.text, trusted, where=note.where)))
            except CheckpointError as exc:
                reason = str(exc).removeprefix(f"checkpoint {note.where}: ")
                unreadable.append(CheckpointResult(note.where, False, reason))
        opened.sort(key=lambda item: (item[1].size, item[1].time, item[0].where))
        # Every proof's nodes (and the root's) read at once; shared subtrees hashed once.
        proofs = reader.consistency_proofs(
            [cp.size for _, cp in opened if cp.origin == origin and 0 < cp.size <= size], size
        )
        root = reader.root(size)
        verdicts: list[tuple[FoundNote, Checkpoint, str]] = []
        for note, cp in opened:
            verdicts.append((note, cp, _against(cp, origin, size, root, proofs)))
    results = list(unreadable)
    for note, cp, reason in verdicts:
        if reason == "inconsistent":
            reason = _why_inconsistent(cp, note, verdicts)
        results.append(
            CheckpointResult(note.where, not reason, reason, cp.size, cp.time, _b64(cp.root))
        )
    return CheckpointsReport(origin, size, _b64(root), tuple(results))


def _against(
    cp: Checkpoint, origin: str, size: int, root: bytes, proofs: dict[int, list[bytes]]
) -> str:
    if cp.origin != origin:
        return (
            f"it is from another project (origin {cp.origin!r}; this ledger is "
            f"{origin or 'empty'!r}): keep each project's checkpoints apart"
        )
    if cp.size > size:
        return (
            f"it signed {cp.size} events but the ledger holds only {size}: events were "
            "deleted from the end, or the database was restored from an older copy"
        )
    if cp.size == 0:
        return "" if cp.root == hashlib.sha256(b"").digest() else "inconsistent"
    proof = proofs[cp.size]
    return "" if verify_consistency(cp.size, size, cp.root, root, proof) else "inconsistent"


def _why_inconsistent(
    cp: Checkpoint, note: FoundNote, verdicts: Sequence[tuple[FoundNote, Checkpoint, str]]
) -> str:
    for other_note, other, _ in verdicts:
        if other is not cp and other.size == cp.size and other.root != cp.root:
            return (
                f"the ledger forked: it and {other_note.where} sign different trees of "
                f"{cp.size} events, so they cannot both be prefixes of one ledger"
            )
    for other_note, other, reason in verdicts:
        if other.size >= cp.size and not reason:
            return (
                f"the ledger forked: its first {cp.size} events differ from those of "
                f"{other_note.where}, which the ledger matches; both cannot be prefixes of "
                "one ledger (a diverging copy of the database signed it)"
            )
    return (
        f"the ledger's first {cp.size} events are not those it signed: events were "
        "rewritten (even with the hash chain recomputed), or the database was rolled back "
        "and appended to since"
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def inclusion_proof(db: Driver, seq: int, size: int | None = None) -> dict[str, Any]:
    """The proof that event ``seq`` is in the tree of ``size`` events (default: all).

    Returns:
        JSON-able data: the origin, the event (all its stored fields), its leaf, the tree
        size and root, and the audit path (hex), with how to check them (docs/audit.md).

    Raises:
        NotFoundError: no such event, or ``size`` is not between ``seq`` and the
            ledger's size.
    """
    ensure_tree(db)
    with db.snapshot():
        total = _size(db)
        tree_size = total if size is None else size
        event = event_at(db, seq)
        if event is None:
            raise NotFoundError(f"no event {seq}: the ledger holds events 1 to {total}")
        if not seq <= tree_size <= total:
            raise NotFoundError(
                f"--size {tree_size} cannot hold event {seq}: give a size from {seq} to {total}"
            )
        reader = read_tree(db)
        path = reader.inclusion_proof(seq - 1, tree_size)
        root = reader.root(tree_size)
        origin = ledger_origin(db)
    chain = event.hash.removeprefix("blake3:")
    from pipetrail.ledger.merkle import leaf_hash

    return {
        "origin": origin,
        "tree_size": tree_size,
        "root": _b64(root),
        "root_hex": root.hex(),
        "leaf_index": seq - 1,
        "leaf_data": chain,
        "leaf_hash": leaf_hash(bytes.fromhex(chain)).hex(),
        "inclusion_path": [node.hex() for node in path],
        "event": event.fields(),
        "algorithm": "RFC 9162 section 2.1.3.2 with SHA-256; leaf data = the event's "
        "chain hash (32 bytes)",
    }


def check_proof(proof: dict[str, Any]) -> bool:
    """Check a proof printed by :func:`inclusion_proof` with hashes alone."""
    from pipetrail.ledger.merkle import leaf_hash, verify_inclusion

    leaf = leaf_hash(bytes.fromhex(proof["leaf_data"]))
    path = [bytes.fromhex(node) for node in proof["inclusion_path"]]
    root = base64.b64decode(proof["root"])
    return verify_inclusion(leaf, proof["leaf_index"], proof["tree_size"], path, root)
