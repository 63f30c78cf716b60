"""Ledger events: their kinds, their canonical form and the hash chain.

An event is ``(seq, ts, actor, kind, run_id, payload, prev_hash, hash)``. ``payload`` is
canonical JSON text and ``hash`` is the BLAKE3 digest of the canonical encoding of every
other field, the payload *text* included, so changing any stored byte breaks the chain.
See docs/adr/0002-ledger-format.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson
from blake3 import blake3

from pipetrail.hashing import canonical_json, digest_value
from pipetrail.hashing.canonical import (
    CANONICAL_VERSION,
    checked_canonical_json,
    checked_json_of_members,
)

__all__ = [
    "GENESIS_HASH",
    "HASH_FORMAT",
    "Event",
    "EventDraft",
    "EventKind",
    "checked_payload_text",
    "encoded_draft",
    "event_hash",
    "hashed_here",
    "payload_text",
    "remember_hashes",
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


@dataclass(frozen=True, init=False)
class EventDraft:
    """An event before the ledger assigns its sequence number, time and hashes.

    ``encoded`` is the payload's text and whether orjson wrote it, as
    :func:`checked_payload_text` gives them, when the draft was made by
    :func:`encoded_draft` (the ledger then stores that text instead of encoding the
    payload again); None otherwise. The payload must not change after that.
    """

    kind: EventKind
    payload: dict[str, Any]
    run_id: str | None = None
    encoded: tuple[str, bool] | None = field(default=None, compare=False, repr=False)

    def __init__(
        self,
        kind: EventKind,
        payload: dict[str, Any],
        run_id: str | None = None,
        encoded: tuple[str, bool] | None = None,
    ) -> None:
        # What the generated __init__ does (one object.__setattr__ per field, since the
        # class is frozen) in one step: a run makes several drafts per step.
        self.__dict__.update(kind=kind, payload=payload, run_id=run_id, encoded=encoded)


def encoded_draft(
    kind: EventKind, payload: dict[str, Any], *, run_id: str | None, plain: frozenset[str]
) -> EventDraft:
    """A draft whose payload is encoded now, without walking the members named in ``plain``.

    ``plain`` names the payload's members already shown to be written by orjson as the
    reference encoder writes them (see
    :func:`~pipetrail.hashing.canonical.checked_json_of_members`); the text is the one
    :func:`checked_payload_text` gives. The caller must not change the payload after.
    """
    return EventDraft(kind, payload, run_id, checked_json_of_members(payload, plain))


@dataclass(frozen=True, init=False)
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

    def __init__(
        self,
        seq: int,
        ts: str,
        actor: str,
        kind: str,
        run_id: str | None,
        payload_text: str,
        prev_hash: str,
        hash: str,
    ) -> None:
        # What the generated __init__ does (one object.__setattr__ per field, since the
        # class is frozen) in one step: the ledger makes an Event per event it appends
        # or reads.
        self.__dict__.update(
            seq=seq,
            ts=ts,
            actor=actor,
            kind=kind,
            run_id=run_id,
            payload_text=payload_text,
            prev_hash=prev_hash,
            hash=hash,
        )

    def computed_hash(self) -> str:
        """The chain hash of this event's stored fields (equal to ``hash`` when intact).

        Taken from :func:`hashed_here` when this process computed it for these very
        fields; computed otherwise.
        """
        known = hashed_here(self)
        if known is not None:
            return known[0]
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
    """Return the chain hash of one event's fields (see the module docstring).

    Fields of the types the ledger writes (an ``int`` sequence number, text, a ``None``
    run id) are encoded by orjson directly: :func:`~pipetrail.hashing.digest_value`
    would check exactly these types before letting orjson write them, and falls back
    to the reference encoder when orjson refuses (a lone surrogate, a number beyond 64
    bits), as this does.
    """
    if (
        type(seq) is int
        and type(ts) is str
        and type(actor) is str
        and type(kind) is str
        and type(payload_text) is str
        and type(prev_hash) is str
        and (run_id is None or type(run_id) is str)
    ):
        try:
            body = orjson.dumps(
                {
                    "actor": actor,
                    "format": HASH_FORMAT,
                    "kind": kind,
                    "payload": payload_text,
                    "prev": prev_hash,
                    "run_id": run_id,
                    "seq": seq,
                    "ts": ts,
                }
            )
        except orjson.JSONEncodeError:
            pass  # beyond orjson: the reference encoder decides, or says what is wrong
        else:
            return "blake3:" + blake3(CANONICAL_VERSION + body).hexdigest()
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


# seq -> (the fields the chain hash was computed from, that hash, whether orjson wrote
# the payload text): chain hashes this process computed when it appended the events.
# A pure function's results: valid whatever the database holds now. Bounded; it starts
# again empty beyond the bound (forgetting only costs a hash).
_HASHED: dict[int, tuple[tuple[str, str, str, str | None, str, str], str, bool]] = {}
HASHED_MAX = 20_000


def remember_hashes(events: list[Event], plain: list[bool]) -> None:
    """Remember the chain hashes of ``events``, just computed by :func:`event_hash`.

    ``plain[i]``: orjson wrote the payload text of ``events[i]`` (from a value whose
    members all passed its checks: its integers are within 64 bits, its floats finite).
    """
    if len(_HASHED) + len(events) > HASHED_MAX:
        _HASHED.clear()
        if len(events) > HASHED_MAX:
            return
    for event, fast in zip(events, plain, strict=True):
        _HASHED[event.seq] = (
            (event.ts, event.actor, event.kind, event.run_id, event.payload_text, event.prev_hash),
            event.hash,
            fast,
        )


def hashed_here(event: Event) -> tuple[str, bool] | None:
    """The chain hash of ``event``'s fields as this process computed it, if it did.

    Returns the hash and whether orjson wrote the payload text, when
    :func:`remember_hashes` was given an event whose fields equal these; else None.

    Every field is compared (the payload text as a whole): only an event whose stored
    fields are exactly those hashed gets the remembered hash, which is then what
    hashing them again gives.
    """
    found = _HASHED.get(event.seq) if type(event.seq) is int else None
    if found is None:
        return None
    fields, digest, plain = found
    if fields != (
        event.ts,
        event.actor,
        event.kind,
        event.run_id,
        event.payload_text,
        event.prev_hash,
    ):
        return None
    return digest, plain
