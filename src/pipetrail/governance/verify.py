"""The governance part of ``pipetrail audit verify``: every signature, every rule.

The ledger's own audit re-hashes the chain; this folds every governance event
(:func:`~pipetrail.governance.state.load_state`) and reports each that fails: a signature
that does not verify with the key its signer held at that point, a signer who was not a
user or held a rotated key, or an act the rules did not allow then.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from pipetrail.governance.state import GovernanceState, fold_acts, load_state

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from pipetrail.governance.keys import PublicKey
    from pipetrail.ledger.audit import Meanwhile, Sent
    from pipetrail.ledger.driver import Driver
    from pipetrail.ledger.governance_reads import StoredAct
    from pipetrail.ledger.ledger import Ledger

__all__ = [
    "audit_signatures",
    "governance_in_snapshot",
    "signatures_beside",
    "verify_governance",
]

# Signatures checked at a time between looks at what the other process sent: a batch
# costs about 13 ms (130 us a signature); the last batch either started is done twice.
_BATCH = 100


def verify_governance(ledger: Ledger, *, chain_verified: bool = False) -> dict[str, Any]:
    """Verify every governance event of ``ledger`` in one read snapshot.

    ``chain_verified``: the whole hash chain was just verified (``audit verify`` does that
    first), so events are not re-hashed again; their signatures and rules all are.

    Returns:
        ``ok``, ``events`` (governance events folded), ``signatures`` (verified) and
        ``problems`` (``seq``, ``kind``, ``reason``, ``message`` of each that fails).
    """
    from pipetrail.ledger.db_errors import mapped_errors

    db = ledger.db
    with mapped_errors(ledger.url), db.snapshot():
        return governance_in_snapshot(db, chain_verified=chain_verified)


def governance_in_snapshot(
    db: Driver,
    *,
    chain_verified: bool = False,
    verdicts: dict[int, tuple[bytes, bool]] | None = None,
) -> dict[str, Any]:
    """:func:`verify_governance` of a driver already in a read snapshot.

    ``audit verify`` runs it in the snapshot whose chain it verified, while its second
    process still works (:class:`~pipetrail.ledger.audit.Meanwhile`). ``verdicts``: the
    signatures that process checked (see :func:`audit_signatures`).
    """
    return _report(load_state(db, rehash=not chain_verified, verdicts=verdicts))


def _report(state: GovernanceState) -> dict[str, Any]:
    return {
        "ok": not state.problems,
        "events": len(state.entries),
        "signatures": state.signatures,
        "problems": [
            {"seq": p.seq, "kind": p.kind, "reason": p.reason, "message": p.message}
            for p in state.problems
        ],
    }


def audit_signatures(batch: int = _BATCH) -> Meanwhile[dict[str, Any]]:
    """The governance check ``audit verify`` runs once the chain verified.

    On a large ledger the audit's second process takes on some of the signatures once
    its replay is done (:func:`signatures_beside`, from the last event back), while
    this process checks them from the first on (:func:`_shared_check`); the fold then
    takes those verdicts, so the result is exactly the one a fold checking every
    signature gives. Without that process, the fold checks them all. ``batch``: how
    many signatures either process checks between looks at what the other did.
    """
    from pipetrail.ledger.audit import Meanwhile, Share

    whole = partial(governance_in_snapshot, chain_verified=True)
    check = partial(_shared_check, batch=batch)
    return Meanwhile(whole, share=Share(f"{__name__}:signatures_beside", (batch,), check))


def _shared_check(db: Driver, sent: Sent, *, batch: int = _BATCH) -> dict[str, Any]:
    """:func:`governance_in_snapshot` with the signatures shared with the other process.

    This process checks the governance events' signatures from the first on, in batches,
    and takes after each the batches the other process finished from the last back
    (``sent``: each is its first event's index, and the verdicts of
    :func:`_check_batch`), until what both did covers every event; the other process
    is then told it is enough. The fold then takes the verdicts, and checks anything
    they leave out itself.
    """
    from pipetrail.ledger.governance_reads import governance_acts

    acts = list(governance_acts(db))
    keys = _named_keys(acts)
    verdicts: dict[int, tuple[bytes, bool]] = {}
    done = 0  # this process has checked acts[:done]
    low = len(acts)  # the other has checked acts[low:]
    while True:
        for start, found in sent.arrived():
            _take(verdicts, found)
            low = min(low, start)
        if done >= low:
            break
        end = min(done + batch, low)
        _take(verdicts, _check_batch(acts[done:end], keys))
        done = end
    sent.enough()
    return _report(fold_acts(acts, rehash=False, verdicts=verdicts))


def _take(verdicts: dict[int, tuple[bytes, bool]], found: Any) -> None:
    for raw, good, bad in found:
        verdicts.update(dict.fromkeys(good, (raw, True)))
        verdicts.update(dict.fromkeys(bad, (raw, False)))


def signatures_beside(
    db: Driver, batch: int = _BATCH
) -> Iterator[tuple[int, list[tuple[bytes, list[int], list[int]]]]]:
    """The signatures of the governance events, checked in batches from the last event back.

    Run by ``audit verify``'s second process once its replay is done, until the first
    process, which checks them from the first event on, no longer needs it.

    Yields:
        Each batch's first index among the governance events, and its verdicts
        (:func:`_check_batch`): plain data for :mod:`marshal`.
    """
    from pipetrail.ledger.governance_reads import governance_acts

    acts = list(governance_acts(db))
    keys = _named_keys(acts)
    for end in range(len(acts), 0, -batch):
        start = max(0, end - batch)
        yield start, _check_batch(acts[start:end], keys)


def _named_keys(acts: Sequence[StoredAct]) -> dict[str, PublicKey]:
    """Every key the record names (added or rotated in, valid or not), by key id.

    The first key of each id: another with the same id is left to the fold.
    """
    from pipetrail.errors import IdentityError
    from pipetrail.governance.keys import parse_public_key
    from pipetrail.ledger.events import EventKind

    named = (str(EventKind.USER_ADDED), str(EventKind.USER_KEY_ROTATED))
    keys: dict[str, PublicKey] = {}
    for act in acts:
        if act.content is not None and act.event.kind in named:
            try:
                key = parse_public_key(str(act.content.get("public_key", "")))
            except IdentityError:
                continue
            keys.setdefault(key.key_id, key)
    return keys


def _check_batch(
    acts: Sequence[StoredAct], keys: dict[str, PublicKey]
) -> list[tuple[bytes, list[int], list[int]]]:
    """Check the signatures of ``acts`` without the fold.

    Which key signed an event is the fold's to say (the key its signer held at that
    point); here the candidate is the key of the record (:func:`_named_keys`) with the
    key id the event gives. The fold takes a verdict only when that is the key it finds
    the signer holding, and checks the signature itself otherwise. An event without a
    signer, key id and signature, or naming no key of the record, is left to the fold.

    Returns:
        For each key used, its raw bytes, the sequence numbers of the events whose
        signature verified with it, and of those whose signature did not.
    """
    from pipetrail.governance.identity import signed_content
    from pipetrail.governance.keys import signing_message, verify_signature

    found: dict[bytes, tuple[list[int], list[int]]] = {}
    for act in acts:
        content = act.content
        if content is None:
            continue
        by, key_id, signature = content.get("by"), content.get("key_id"), content.get("signature")
        if not isinstance(by, str) or not isinstance(key_id, str) or not isinstance(signature, str):
            continue
        key = keys.get(key_id)
        if key is None:
            continue
        message = signing_message(act.event.kind, signed_content(content))
        good, bad = found.setdefault(key.raw, ([], []))
        (good if verify_signature(key, message, signature) else bad).append(act.event.seq)
    return [(raw, good, bad) for raw, (good, bad) in found.items()]
