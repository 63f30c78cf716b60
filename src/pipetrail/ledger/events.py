"""Ledger events: their kinds, their canonical form and the hash chain.

An event is ``(seq, ts, actor, kind, run_id, payload, prev_hash, hash)``. ``payload`` is
canonical JSON text and ``hash`` is the BLAKE3 digest of the canonical encoding of every
other field, the payload *text* included, so changing any stored byte breaks the chain.
See docs/adr/0002-ledger-format.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pipetrail.hashing import canonical_json, digest_value
from pipetrail.hashing.canonical import checked_canonical_json

__all__ = [
    "GENESIS_HASH",
    "HASH_FORMAT",
    "Event",
    "EventDraft",
    "EventKind",
    "checked_payload_text",
    "event_hash",
    "payload_text",
]

HASH_FORMAT = 1
GENESIS_HASH = "blake3:" + "0" * 64


class EventKind(StrEnum):
    """Every kind of fact the ledger records.

    Kinds are only ever added, never renamed or removed: old ledgers must keep verifying
    and projecting. Later layers (lineage, contracts, governance, data handling) add their
    own kinds here when they are built.
    """

    RUN_STARTED = "run.started"
    RUN_COMPLETED = "run.completed"
    RUN_FAILED = "run.failed"
    RUN_CRASHED = "run.crashed"
    RUN_INTERRUPTED = "run.interrupted"
    STEP_STARTED = "step.started"
    STEP_COMPLETED = "step.completed"
    STEP_CACHED = "step.cached"
    STEP_FAILED = "step.failed"
    ARTIFACT_RECORDED = "artifact.recorded"
    SOURCE_OBSERVED = "source.observed"
    REPRODUCTION_CHECKED = "reproduction.checked"
    GATE_CHECKED = "gate.checked"
    RUN_NAMED = "run.named"
    RUN_TAGGED = "run.tagged"
    RUN_UNTAGGED = "run.untagged"
    RUN_NOTED = "run.noted"
    RUN_DELETED = "run.deleted"
    STORE_COLLECTED = "store.collected"
    # Governance (signed by the acting identity; no projection: governance state is a
    # fold over these events, see pipetrail.governance.state and docs/adr/0019).
    USER_ADDED = "user.added"
    USER_GRANTED = "user.granted"
    USER_REVOKED = "user.revoked"
    USER_KEY_ROTATED = "user.key_rotated"
    MODEL_REGISTERED = "model.registered"
    PROMOTION_REQUESTED = "promotion.requested"
    PROMOTION_APPROVED = "promotion.approved"
    PROMOTION_REJECTED = "promotion.rejected"
    ALIAS_MOVED = "alias.moved"
    DECISION_RECORDED = "decision.recorded"
    # Data handling: the project's data keys wrapped under a new key encryption key.
    KEYS_ROTATED = "keys.rotated"
    # The project keyring (wrapped keys only) kept in the ledger (keyring = "ledger").
    KEYS_KEYRING = "keys.keyring"
    # Alerts (pipetrail.observability.alerts): a rule's message delivered, or given up on.
    ALERT_SENT = "alert.sent"
    ALERT_FAILED = "alert.failed"
    # Access to sensitive content: grants (signed governance acts, see
    # pipetrail.governance.grants) and the record of every read and refusal (unsigned).
    ACCESS_GRANTED = "access.granted"
    ACCESS_REVOKED = "access.revoked"
    ACCESS_READ = "access.read"
    ACCESS_REFUSED = "access.refused"


@dataclass(frozen=True)
class EventDraft:
    """An event before the ledger assigns its sequence number, time and hashes."""

    kind: EventKind
    payload: dict[str, Any]
    run_id: str | None = None


@dataclass(frozen=True)
class Event:
    """An appended, hash-chained event."""

    seq: int
    ts: str
    actor: str
    kind: str
    run_id: str | None
    payload_text: str
    prev_hash: str
    hash: str

    def computed_hash(self) -> str:
        """The chain hash of this event's stored fields (equal to ``hash`` when intact)."""
        return event_hash(
            seq=self.seq,
            ts=self.ts,
            actor=self.actor,
            kind=self.kind,
            run_id=self.run_id,
            payload_text=self.payload_text,
            prev_hash=self.prev_hash,
        )

    @property
    def payload(self) -> dict[str, Any]:
        """The payload, parsed."""
        value: dict[str, Any] = json.loads(self.payload_text)
        return value

    def fields(self) -> dict[str, Any]:
        """The stored fields by column name (``payload``: the stored text, not re-encoded)."""
        return {
            "seq": self.seq,
            "ts": self.ts,
            "actor": self.actor,
            "kind": self.kind,
            "run_id": self.run_id,
            "payload": self.payload_text,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def event_hash(
    *,
    seq: int,
    ts: str,
    actor: str,
    kind: str,
    run_id: str | None,
    payload_text: str,
    prev_hash: str,
) -> str:
    """Return the chain hash of one event's fields (see the module docstring)."""
    return digest_value(
        {
            "format": HASH_FORMAT,
            "seq": seq,
            "ts": ts,
            "actor": actor,
            "kind": kind,
            "run_id": run_id,
            "payload": payload_text,
            "prev": prev_hash,
        }
    )


def payload_text(payload: dict[str, Any]) -> str:
    """Return the canonical JSON text stored for a payload."""
    return canonical_json(payload)


def checked_payload_text(payload: dict[str, Any]) -> tuple[str, bool]:
    """Return :func:`payload_text` and whether its members may be encoded unchecked.

    See :func:`~pipetrail.hashing.canonical.checked_canonical_json`.
    """
    return checked_canonical_json(payload)
