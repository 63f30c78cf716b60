"""Votes signed where the private key is: the server proposes the bytes, the signer signs.

A browser can hold an approver's Ed25519 key (WebCrypto) so that the key never reaches
the server. Voting then takes two calls:

1. :func:`vote_to_sign` runs the vote as a preview (:class:`~pipetrail.governance.service.
   Governance` with ``preview=True``): under the write lock, on the committed state, with
   the same rules as a real vote (the requester may not approve their own request...),
   it builds the events the vote would append, and writes nothing. It returns, for each
   event, the exact bytes its signature must cover
   (:func:`~pipetrail.governance.keys.signing_message`), made with the key the ledger
   records for the voter.
2. :func:`vote_signed` runs the vote for real with those signatures: each event built
   under the write lock takes the first signature that verifies over its bytes with the
   voter's recorded key; if one does not, the vote is refused and nothing is written.
   The state may have moved between the two calls (another approval completed the
   policy, so the alias move is no longer part of this vote): the bytes then differ and
   the voter signs again.

The events are the ones :meth:`~pipetrail.governance.service.Governance.approve` would
sign with a key file, so `pipetrail audit verify` checks them the same way: it proves the
holder of the voter's recorded key signed the approval, whoever ran the server.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.errors import IdentityError, NotFoundError
from pipetrail.governance.keys import Signer, verify_signature

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pipetrail.execution.project import Project
    from pipetrail.governance.keys import PublicKey

__all__ = ["MAX_SIGNATURES", "ToSign", "VoteDraft", "vote_signed", "vote_to_sign"]

MAX_SIGNATURES = 8  # a vote signs one or two events (the approval, the alias move)
_PLACEHOLDER = base64.b64encode(bytes(64)).decode("ascii")


@dataclass(frozen=True)
class ToSign:
    """One event a vote appends: its kind, the signed payload, the bytes to sign."""

    kind: str
    payload: dict[str, Any]
    message: bytes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the bytes in base64 (``message``)."""
        return {
            "kind": self.kind,
            "payload": self.payload,
            "message": base64.b64encode(self.message).decode("ascii"),
        }


@dataclass(frozen=True)
class VoteDraft:
    """What a vote appends, and the key the ledger records for the voter (that must sign)."""

    user: str
    public_key: str
    key_id: str
    events: list[ToSign]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "user": self.user,
            "public_key": self.public_key,
            "key_id": self.key_id,
            "events": [e.to_dict() for e in self.events],
        }


class _UnsignedSigner(Signer):
    """Signs nothing: a preview's events carry a placeholder (they are never written)."""

    def __init__(self, name: str, public_key: PublicKey) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "public_key", public_key)
        object.__setattr__(self, "_private", None)  # no private key here, by design

    def sign(self, message: bytes) -> str:
        """The placeholder signature (64 zero bytes in base64)."""
        return _PLACEHOLDER


class _PresignedSigner(Signer):
    """Answers each message with the signature, made elsewhere, that verifies over it."""

    def __init__(self, name: str, public_key: PublicKey, signatures: Sequence[str]) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "public_key", public_key)
        object.__setattr__(self, "_private", None)  # no private key here, by design
        object.__setattr__(self, "presigned", tuple(signatures))

    presigned: tuple[str, ...]

    def sign(self, message: bytes) -> str:
        """The first given signature of ``message`` by the recorded key.

        Raises:
            IdentityError: none verifies (a wrong key, a changed vote, damaged bytes).
        """
        for signature in self.presigned:
            if verify_signature(self.public_key, message, signature):
                return signature
        raise IdentityError(
            f"no signature sent verifies, with the key the ledger records for {self.name} "
            f"({self.public_key.key_id}), over the bytes this vote appends; sign the bytes "
            "the server proposes now with that key (after a key rotation, with the new one)"
        )


def _recorded_key(project: Project, user: str) -> PublicKey:
    from pipetrail.governance.service import Governance

    known = Governance(project, user=user).state().users.get(user)
    if known is None:
        raise NotFoundError(
            f"{user!r} is not a user of this project; `pipetrail user add` records them"
        )
    return known.current_key


def vote_to_sign(
    project: Project, user: str, request: str, *, approve: bool, comment: str = ""
) -> VoteDraft:
    """The events ``user``'s vote on ``request`` would append, and the bytes to sign.

    Args:
        project: the project.
        user: the voter (a user of the project; their recorded key signs).
        request: a request id or unique prefix.
        approve: an approval (True) or a rejection.
        comment: the vote's comment (signed with it).

    Raises:
        GovernanceError, PermissionDeniedError, NotFoundError: the vote would be refused
            (the same refusals as :meth:`~pipetrail.governance.service.Governance.approve`).
    """
    from pipetrail.governance.identity import signed_content
    from pipetrail.governance.keys import signing_message
    from pipetrail.governance.service import Governance
    from pipetrail.ledger.governance_reads import draft_act

    key = _recorded_key(project, user)
    gov = Governance(project, signer=_UnsignedSigner(user, key), preview=True)
    (gov.approve if approve else gov.reject)(request, comment=comment)
    events = []
    for draft in gov.previewed:
        act = draft_act(draft, 0, "")  # the content the fold would read
        payload = signed_content(act.content or {})
        events.append(ToSign(act.event.kind, payload, signing_message(act.event.kind, payload)))
    return VoteDraft(user, key.text, key.key_id, events)


def vote_signed(
    project: Project,
    user: str,
    request: str,
    *,
    approve: bool,
    signatures: Sequence[str],
    comment: str = "",
) -> dict[str, Any]:
    """Record ``user``'s vote on ``request`` with signatures made by the holder of their key.

    Returns:
        What :meth:`~pipetrail.governance.service.Governance.approve` returns.

    Raises:
        IdentityError: a signature is missing or does not verify with ``user``'s recorded
            key over the bytes the vote appends; nothing is written.
        GovernanceError, PermissionDeniedError, NotFoundError: the vote is refused.
    """
    from pipetrail.governance.service import Governance

    if not signatures or len(signatures) > MAX_SIGNATURES:
        raise IdentityError(
            f"send between 1 and {MAX_SIGNATURES} signatures, one per event the vote "
            "appends (as the bytes to sign list them)"
        )
    signer = _PresignedSigner(user, _recorded_key(project, user), signatures)
    gov = Governance(project, signer=signer)
    return (
        gov.approve(request, comment=comment) if approve else gov.reject(request, comment=comment)
    )
