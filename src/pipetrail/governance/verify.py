"""The governance part of ``pipetrail audit verify``: every signature, every rule.

The ledger's own audit re-hashes the chain; this folds every governance event
(:func:`~pipetrail.governance.state.load_state`) and reports each that fails: a signature
that does not verify with the key its signer held at that point, a signer who was not a
user or held a rotated key, or an act the rules did not allow then.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.governance.state import load_state

if TYPE_CHECKING:
    from pipetrail.ledger.driver import Driver
    from pipetrail.ledger.ledger import Ledger

__all__ = ["governance_in_snapshot", "verify_governance"]


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


def governance_in_snapshot(db: Driver, *, chain_verified: bool = False) -> dict[str, Any]:
    """:func:`verify_governance` of a driver already in a read snapshot.

    ``audit verify`` runs it in the snapshot whose chain it verified, while its second
    process still works (:class:`~pipetrail.ledger.audit.Meanwhile`).
    """
    state = load_state(db, rehash=not chain_verified)
    return {
        "ok": not state.problems,
        "events": len(state.entries),
        "signatures": state.signatures,
        "problems": [
            {"seq": p.seq, "kind": p.kind, "reason": p.reason, "message": p.message}
            for p in state.problems
        ],
    }
