"""Governance state: a fold over the signed governance events of the ledger.

Nothing about users, keys, roles, models, aliases or promotions is kept in a table of
its own: :func:`load_state` reads the governance events in sequence order (``events``
filtered by kind, an indexed read, through :mod:`pipetrail.ledger.governance_reads`) and
replays them through :mod:`pipetrail.governance.rules`.
Each event is re-hashed, its signature is checked against the key its signer held *at
that point* of the ledger (a rotated key stops signing from the rotation on), and the
act must have been allowed then (roles, separation of duties). An event that fails is
not applied and becomes a :class:`Problem` naming its sequence number: editing the
database can break the record, but cannot add an act without the signer's private key.
See docs/adr/0019-governance-on-the-ledger.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.errors import GovernanceError, PipetrailError, TamperedLedgerError
from pipetrail.governance.verified import VerifiedCache
from pipetrail.ledger.governance_reads import (
    GOVERNANCE_KINDS,
    StoredAct,
    governance_acts,
    model_governance_acts,
    read_governance_acts,
    run_governance_acts,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pipetrail.governance.keys import PublicKey
    from pipetrail.governance.roles import Role
    from pipetrail.ledger.driver import Driver
    from pipetrail.ledger.events import Event
    from pipetrail.ledger.queries import Reader

__all__ = [
    "GOVERNANCE_KINDS",
    "Approval",
    "Entry",
    "GovernanceState",
    "Grant",
    "KeyPeriod",
    "ModelVersion",
    "Problem",
    "Request",
    "User",
    "fold_acts",
    "load_state",
    "read_model_state",
    "read_run_state",
    "read_state",
]


@dataclass
class KeyPeriod:
    """A public key a user held, from the event that recorded it until one replaced it."""

    key: PublicKey
    from_seq: int
    until_seq: int | None = None


@dataclass
class User:
    """A person or service account, with its roles and keys over time."""

    name: str
    email: str | None
    kind: str
    roles: set[Role]
    keys: list[KeyPeriod]
    added_seq: int
    added_by: str

    @property
    def current_key(self) -> PublicKey:
        """The key that signs for this user now."""
        return self.keys[-1].key

    def raw_keys(self) -> set[bytes]:
        """Every key this user has ever held (raw bytes): one person, however named."""
        return {period.key.raw for period in self.keys}


@dataclass
class ModelVersion:
    """Version N of a model: an artifact digest and where it came from."""

    model: str
    version: int
    digest: str
    run_id: str | None
    node_id: str | None
    output: str | None
    serializer: str
    by: str
    ts: str
    seq: int


@dataclass
class Grant:
    """Leave for one user to read content of one label, for a purpose, maybe until a date.

    ``until`` is an ISO date (the grant holds through that day, UTC) or None (no end);
    ``revoked_seq`` is the event that revoked it, if one did.
    """

    grant_id: str
    user: str
    label: str
    purpose: str
    until: str | None
    by: str
    ts: str
    seq: int
    revoked_seq: int | None = None

    def active(self, today: str) -> bool:
        """Whether the grant allows a read on ``today`` (an ISO date, UTC)."""
        return self.revoked_seq is None and (self.until is None or today <= self.until)


@dataclass
class Approval:
    """A signed approval or rejection of a request."""

    by: str
    comment: str
    ts: str
    seq: int
    signature_ok: bool = True


@dataclass
class Request:
    """A promotion request: its signed content and what became of it."""

    request_id: str
    model: str
    version: int
    alias: str
    content: dict[str, Any]
    content_digest: str
    by: str
    ts: str
    seq: int
    status: str = "open"  # open | approved | rejected
    approvals: list[Approval] = field(default_factory=list)
    rejections: list[Approval] = field(default_factory=list)
    moved_seq: int | None = None

    @property
    def policy(self) -> dict[str, Any]:
        """The policy frozen into the request."""
        value: dict[str, Any] = self.content.get("policy") or {}
        return value


@dataclass
class Entry:
    """One governance event as the fold saw it: for history and audit."""

    seq: int
    ts: str
    kind: str
    by: str
    content: dict[str, Any]  # the signed content (empty when it could not be read)
    status: str  # "verified" or why it is not counted


@dataclass(frozen=True)
class Problem:
    """A governance event that does not verify, and why."""

    seq: int
    kind: str
    reason: str

    @property
    def message(self) -> str:
        """One line naming the event."""
        return f"governance event {self.seq} ({self.kind}): {self.reason}"


@dataclass
class GovernanceState:
    """Users, models, aliases, requests and decisions, as the verified events leave them."""

    users: dict[str, User] = field(default_factory=dict)
    models: dict[str, dict[int, ModelVersion]] = field(default_factory=dict)
    # model -> alias -> the versions it pointed at, oldest first (last: where it points)
    aliases: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    requests: dict[str, Request] = field(default_factory=dict)
    decisions: list[Entry] = field(default_factory=list)
    grants: dict[str, Grant] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    last_seq: int = 0
    signatures: int = 0  # checked here
    cached: int = 0  # checked before, by this user (see pipetrail.governance.verified)
    cache: VerifiedCache | None = None
    rehash: bool = True  # False when the whole chain was just re-hashed (audit verify)
    # Signatures checked elsewhere in this snapshot (audit verify's second process): an
    # event's sequence number -> the raw key it was checked with, and whether it verified.
    # Taken only for the key the fold finds the signer holding (see rules._check_signature).
    verdicts: dict[int, tuple[bytes, bool]] = field(default_factory=dict)

    def alias_version(self, model: str, alias: str) -> int | None:
        """The version ``alias`` of ``model`` points at, or None."""
        stack = self.aliases.get(model, {}).get(alias)
        return stack[-1] if stack else None

    def same_person(self, a: str, b: str) -> bool:
        """Whether two identities are one person: the same name, or a key in common."""
        if a == b:
            return True
        ua, ub = self.users.get(a), self.users.get(b)
        return ua is not None and ub is not None and bool(ua.raw_keys() & ub.raw_keys())

    def require_intact(self) -> None:
        """Refuse to act on a governance record that does not verify.

        Raises:
            TamperedLedgerError: naming the first event that fails and how to investigate.
        """
        if self.problems:
            first = self.problems[0]
            more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
            raise TamperedLedgerError(
                f"the governance record does not verify: {first.message}{more}; nothing was "
                "recorded. Run `pipetrail audit verify` and restore the ledger from a backup",
                seq=first.seq,
            )

    def apply(self, event: Event, content: dict[str, Any], *, checked: bool = False) -> None:
        """Verify and apply one event; raise (a PipetrailError) when it is not valid.

        ``content``: the event's signed content (its payload, parsed).
        ``checked``: its hash and signature were verified before (the rules still run).
        """
        from pipetrail.governance.rules import apply_verified

        apply_verified(self, event, content, checked=checked)
        self.last_seq = event.seq

    def fold(self, act: StoredAct) -> None:
        """Apply one stored event, recording a :class:`Problem` instead of raising."""
        event = act.event
        try:
            if act.content is None:
                raise GovernanceError(act.problem)
            fingerprint = VerifiedCache.fingerprint(event) if self.cache is not None else b""
            checked = self.cache is not None and self.cache.known(fingerprint)
            if not checked and self.rehash and event.computed_hash() != event.hash:
                raise GovernanceError("its content does not match its hash (the row was edited)")
            self.apply(event, act.content, checked=checked)
            if self.cache is not None and not checked:
                self.cache.add(fingerprint)
        except (PipetrailError, ValueError, KeyError, TypeError) as exc:
            reason = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
            self.problems.append(Problem(event.seq, event.kind, reason))
            shown = act.content or {}
            self.entries.append(
                Entry(
                    event.seq,
                    event.ts,
                    event.kind,
                    str(shown.get("by", "?")),
                    shown,
                    f"NOT VERIFIED: {reason}",
                )
            )


def _folded(
    acts: Iterable[StoredAct],
    cache: VerifiedCache | None,
    *,
    rehash: bool = True,
    verdicts: dict[int, tuple[bytes, bool]] | None = None,
) -> GovernanceState:
    state = GovernanceState(cache=cache, rehash=rehash, verdicts=verdicts or {})
    for act in acts:
        state.fold(act)
    if cache is not None:
        cache.save()
    return state


def load_state(
    db: Driver,
    cache: VerifiedCache | None = None,
    *,
    rehash: bool = True,
    verdicts: dict[int, tuple[bytes, bool]] | None = None,
) -> GovernanceState:
    """Fold every governance event of the ledger behind ``db`` (see the module docstring).

    ``cache``: events this user verified before skip the hash and signature checks.
    ``rehash=False``: the caller has just re-hashed the whole chain in this snapshot.
    ``verdicts``: signatures checked in another process reading the same events (see
    :attr:`GovernanceState.verdicts`).
    """
    return _folded(governance_acts(db), cache, rehash=rehash, verdicts=verdicts)


def fold_acts(
    acts: Iterable[StoredAct],
    *,
    rehash: bool = True,
    verdicts: dict[int, tuple[bytes, bool]] | None = None,
) -> GovernanceState:
    """Fold governance events already read (see :func:`load_state`), without a cache."""
    return _folded(acts, None, rehash=rehash, verdicts=verdicts)


def read_state(reader: Reader, cache: VerifiedCache | None = None) -> GovernanceState:
    """Fold the governance events through a read-only reader (one query: one snapshot)."""
    return _folded(read_governance_acts(reader), cache)


def read_run_state(
    reader: Reader, run_id: str, cache: VerifiedCache | None = None
) -> GovernanceState:
    """Fold only what the decisions about a run need (one narrow query).

    The users, the models' registrations and the decisions recorded on ``run_id``
    (:func:`~pipetrail.ledger.governance_reads.run_governance_acts`): the rules those
    events meet depend on nothing else, so their verdicts equal the full fold's, while
    the promotion requests and approvals (most of a busy record) are not read. The
    state's requests and aliases are therefore empty; its decisions are the run's.
    """
    return _folded(run_governance_acts(reader, run_id), cache)


def read_model_state(reader: Reader, cache: VerifiedCache | None = None) -> GovernanceState:
    """Fold only the users and the models' registrations (one narrow query).

    What naming a model version before an act needs (its digest and source run, see
    :func:`~pipetrail.ledger.governance_reads.model_governance_acts`): a registration's
    rules depend on nothing else, so the versions equal the full fold's, while the
    requests, approvals and decisions are not read. The state's requests, aliases and
    decisions are therefore empty, and its problems are those of the events read: an act
    is still checked against the full fold, under the write lock, before it is recorded.
    """
    return _folded(model_governance_acts(reader), cache)
