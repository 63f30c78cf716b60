"""Governance actions: each one checked, signed and appended under the ledger's write lock.

:class:`Governance` acts as one identity on one project. Every action works the same
way: the acting user's private key is loaded; inside the ledger's write transaction
(:meth:`~pipetrail.ledger.ledger.Ledger.append` with a ``precondition``) the governance
state is folded from the committed events, the new events are built and signed, and each
is run through the very rules the fold applies (:mod:`pipetrail.governance.rules`) before
anything is written. So concurrent processes see each other's acts (two approvals of the
same request by one person: the second is refused), and when an approval completes a
request's policy the alias moves in the same transaction. A refusal writes nothing.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from pipetrail.core.clock import format_ts, utcnow
from pipetrail.errors import GovernanceError, IdentityError, NotFoundError
from pipetrail.governance.identity import current_user, signed_draft
from pipetrail.governance.rules import check_alias, check_model_name, request_digest
from pipetrail.governance.state import GovernanceState, load_state
from pipetrail.ledger.events import EventKind
from pipetrail.ledger.governance_reads import draft_act, head_seq

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.execution.project import Project
    from pipetrail.governance.keys import PublicKey, Signer
    from pipetrail.governance.verified import VerifiedCache
    from pipetrail.ledger.driver import Driver
    from pipetrail.ledger.events import Event, EventDraft

__all__ = ["Governance", "parse_model_ref"]


class _Previewed(Exception):  # not an error: it ends a preview's transaction
    """Raised inside a preview's write transaction so that nothing is written."""


def parse_model_ref(text: str, *, need_version: bool = False) -> tuple[str, int | None]:
    """Split ``NAME[:VERSION]`` (VERSION a whole number, optionally ``vN``).

    Raises:
        GovernanceError: the text is not a model ref; says what it should be.
    """
    name, colon, version = text.strip().partition(":")
    check_model_name(name)
    if not colon:
        if need_version:
            raise GovernanceError(f"{text!r} names no version: write NAME:VERSION (e.g. {name}:1)")
        return name, None
    digits = version.removeprefix("v")
    if not digits.isdigit() or int(digits) < 1:
        raise GovernanceError(f"{text!r}: the version must be a number from 1, as in {name}:1")
    return name, int(digits)


class Governance:
    """Governance acts on ``project`` as ``user`` (default: the configured identity).

    Args:
        project: the project whose ledger records the acts.
        user: the acting identity (default :func:`~pipetrail.governance.identity.current_user`).
        signer: the loaded key to sign with (default: ``user``'s key from the key folder).
        preview: build, sign and check each act under the write lock as usual, then write
            nothing (the signatures are not checked: see
            :mod:`pipetrail.governance.remote_signing`).
    """

    def __init__(
        self,
        project: Project,
        *,
        user: str | None = None,
        signer: Signer | None = None,
        preview: bool = False,
    ) -> None:
        self.project = project
        self._user = user or (signer.name if signer else None)
        self._signer = signer
        self._preview = preview
        self.previewed: list[EventDraft] = []  # what the last act would have appended

    @property
    def user(self) -> str:
        """The acting identity's name."""
        if self._user is None:
            self._user = current_user()
        return self._user

    @property
    def signer(self) -> Signer:
        """The acting identity's key (loaded on first use).

        Raises:
            IdentityError: no usable key in the key folder.
        """
        if self._signer is None:
            from pipetrail.governance.keys import load_signer

            self._signer = load_signer(self.user)
        return self._signer

    # -- reading ---------------------------------------------------------------------
    def state(self) -> GovernanceState:
        """The governance state folded from the ledger (one consistent snapshot).

        Reads through the project's reader: a read-only connection unless the ledger is
        open already.
        """
        from pipetrail.governance.state import read_state

        return read_state(self.project.reader(), self._cache())

    def _cache(self) -> VerifiedCache:
        from pipetrail.governance.verified import user_cache

        return user_cache(self.project.config.metadata_url)

    # -- the one way to write ----------------------------------------------------------
    def _act(self, build: Callable[[GovernanceState, Driver], list[EventDraft]]) -> list[Event]:
        def precondition(db: Driver) -> list[EventDraft]:
            state = load_state(db, self._cache())
            state.require_intact()
            drafts = build(state, db)
            seq = head_seq(db)
            ts = format_ts(utcnow())
            for draft in drafts:  # the fold's own rules, before anything is written
                seq += 1
                probe = draft_act(draft, seq, ts)
                state.apply(probe.event, probe.content or {}, checked=self._preview)
            if self._preview:
                self.previewed = drafts
                raise _Previewed
            return drafts

        try:
            return self.project.ledger.append([], precondition=precondition)
        except _Previewed:
            return []

    def _sign(
        self, kind: EventKind, content: dict[str, Any], run_id: str | None = None
    ) -> EventDraft:
        return signed_draft(kind, content, self.signer, run_id=run_id)

    # -- users -----------------------------------------------------------------------
    def bootstrap(self, *, email: str | None = None) -> PublicKey:
        """Make the acting identity the project's first admin (only while no user exists).

        Creates the identity's key when it has none. Returns its public key.

        Raises:
            GovernanceError: the project has users already.
        """
        from pipetrail.governance.keys import create_key, key_folder

        if not (key_folder() / "keys" / f"{self.user}.key").exists():
            create_key(self.user)

        def build(state: GovernanceState, db: Driver) -> list[EventDraft]:
            if state.users:
                admins = sorted(u.name for u in state.users.values() if "admin" in u.roles)
                raise GovernanceError(
                    f"this project has users already (admins: {', '.join(admins)}); ask one "
                    f"to add you: `pipetrail user add {self.user} --key PUBLIC_KEY`"
                )
            return [self._sign(EventKind.USER_ADDED, self._user_content(
                self.user, self.signer.public_key.text, email, service=False, roles=["admin"]
            ))]  # fmt: skip

        self._act(build)
        return self.signer.public_key

    @staticmethod
    def _user_content(
        name: str, key: str, email: str | None, *, service: bool, roles: list[str]
    ) -> dict[str, Any]:
        return {
            "user": name,
            "email": email,
            "kind": "service" if service else "person",
            "public_key": key,
            "roles": roles,
        }

    def add_user(
        self,
        name: str,
        public_key: str,
        *,
        email: str | None = None,
        service: bool = False,
        roles: tuple[str, ...] = (),
    ) -> None:
        """Record a user (admin only), with their public key and optional roles."""
        from pipetrail.governance.keys import check_name, parse_public_key
        from pipetrail.governance.roles import parse_role

        content = self._user_content(
            check_name(name),
            parse_public_key(public_key).text,
            email,
            service=service,
            roles=sorted({parse_role(r).value for r in roles}),
        )
        self._act(lambda state, db: [self._sign(EventKind.USER_ADDED, content)])

    def grant(self, name: str, role: str) -> None:
        """Grant ``role`` to ``name`` (admin only)."""
        self._role_event(EventKind.USER_GRANTED, name, role)

    def revoke(self, name: str, role: str) -> None:
        """Revoke ``role`` from ``name`` (admin only; the last admin keeps it)."""
        self._role_event(EventKind.USER_REVOKED, name, role)

    def _role_event(self, kind: EventKind, name: str, role: str) -> None:
        from pipetrail.governance.roles import parse_role

        content = {"user": name, "role": parse_role(role).value}
        self._act(lambda state, db: [self._sign(kind, content)])

    def grant_access(
        self, name: str, label: str, *, purpose: str, until: str | None = None
    ) -> dict[str, Any]:
        """Let ``name`` read content labelled ``label`` for ``purpose`` (admin only).

        ``until``: the last day (``YYYY-MM-DD``, UTC) the grant holds; it must not be past.
        Returns the grant's recorded content.
        """
        from pipetrail.governance.grants import check_grant_label, check_until

        end = check_until(until)
        if end is not None and end < utcnow().date().isoformat():
            raise GovernanceError(f"--until {end} is in the past; give a day from today on")
        content: dict[str, Any] = {
            "grant_id": "grant-" + secrets.token_hex(5),
            "user": name,
            "label": check_grant_label(label),
            "purpose": purpose.strip(),
            "until": end,
        }
        self._act(lambda state, db: [self._sign(EventKind.ACCESS_GRANTED, content)])
        return content

    def revoke_access(self, name: str, label: str) -> None:
        """End every open grant of ``name`` for ``label`` (admin only)."""
        content = {"user": name, "label": label}
        self._act(lambda state, db: [self._sign(EventKind.ACCESS_REVOKED, content)])

    def rotate_key(self, name: str | None = None, public_key: str | None = None) -> PublicKey:
        """Replace a key: the acting user's own (a new pair is made), or, as admin, anyone's.

        The old key stops signing from the rotation on; signatures it made before still
        verify. A new own key is kept only once the rotation is recorded; the old one stays
        in the key folder as ``NAME.key.old-N``.
        """
        from pipetrail.governance.keys import adopt_key, create_key, key_folder, parse_public_key

        target = name or self.user
        if public_key is not None:
            key = parse_public_key(public_key)
            content = {"user": target, "public_key": key.text}
            self._act(lambda state, db: [self._sign(EventKind.USER_KEY_ROTATED, content)])
            return key
        if target != self.user:
            raise IdentityError(
                f"a new key pair is made for yourself only; for {target}, give the public key "
                f"they made: `pipetrail user rotate-key {target} --key PUBLIC_KEY`"
            )
        import shutil  # only here: it imports the compression modules

        self.signer  # noqa: B018 - the old key must load before a new one is made
        staging = key_folder() / f".rotate-{secrets.token_hex(4)}"
        try:
            key = create_key(target, folder=staging)
            content = {"user": target, "public_key": key.text}
            self._act(lambda state, db: [self._sign(EventKind.USER_KEY_ROTATED, content)])
            adopt_key(target, staging / "keys" / f"{target}.key")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self._signer = None
        return key

    # -- models ----------------------------------------------------------------------
    def register(self, model: str, ref: str) -> dict[str, Any]:
        """Register the artifact ``ref`` names as the next version of ``model``.

        ``ref`` is ``RUN:STEP[.OUTPUT]`` or a digest. Returns the version's record.
        """
        from pipetrail.lineage.readout import resolve_output

        check_model_name(model)
        found = resolve_output(self.project.reader(), ref)
        content: dict[str, Any] = {
            "model": model,
            "digest": found.digest,
            "run_id": found.run_id,
            "node_id": found.node_id,
            "output": found.output,
            "serializer": found.serializer,
        }

        def build(state: GovernanceState, db: Driver) -> list[EventDraft]:
            content["version"] = len(state.models.get(model, {})) + 1
            return [self._sign(EventKind.MODEL_REGISTERED, content)]

        self._act(build)
        return content

    def request_promotion(
        self,
        model: str,
        version: int,
        alias: str,
        *,
        rationale: str,
        risk: str,
        risk_notes: str = "",
    ) -> dict[str, Any]:
        """Open a request to point ``alias`` of ``model`` at ``version``.

        The alias's policy (``pipetrail.toml``) is frozen into the request with the result
        of each check it asks for; a version whose checks fail is refused, naming each
        failing check and its value, and nothing is recorded.

        Returns:
            The request's recorded content (``request_id``, ``checks``, ``policy``...).
        """
        from pipetrail.governance.checks import evaluate_checks
        from pipetrail.governance.policy import AliasPolicy, load_policies
        from pipetrail.governance.state import read_model_state

        check_alias(alias)
        policy = load_policies(self.project.root).get(alias) or AliasPolicy()
        # The versions alone (a narrow read): the request is checked against the whole
        # record under the write lock, tampering included, before anything is recorded.
        state = read_model_state(self.project.reader(), self._cache())
        state.require_intact()
        found = state.models.get(model, {}).get(version)
        if found is None:
            raise NotFoundError(
                f"model {model} has no version {version} "
                f"({len(state.models.get(model, {}))} registered); see `pipetrail model list`"
            )
        results = evaluate_checks(self.project, policy, found.run_id)
        failing = [r for r in results if not r.passed]
        if failing:
            listed = "; ".join(f"{r.name} (value: {r.value!r}): {r.detail}" for r in failing)
            raise GovernanceError(
                f"{model}:{version} cannot be promoted to {alias}: {len(failing)} check(s) of "
                f"its policy fail: {listed}; nothing was recorded"
            )
        content: dict[str, Any] = {
            "request_id": "req-" + secrets.token_hex(5),
            "model": model,
            "version": version,
            "digest": found.digest,
            "alias": alias,
            "rationale": rationale,
            "risk": risk,
            "risk_notes": risk_notes,
            "checks": [r.to_dict() for r in results],
            "policy": policy.frozen(),
        }
        self._act(lambda state, db: [self._sign(EventKind.PROMOTION_REQUESTED, content)])
        from pipetrail.observability.alert_events import promotion_alert

        promotion_alert(self.project, content, found.run_id)
        return content

    def resolve_request(self, state: GovernanceState, ref: str) -> str:
        """The request id ``ref`` names (the id or a unique prefix)."""
        ref = ref.strip()
        if ref in state.requests:
            return ref
        found = [r for r in state.requests if r.startswith(ref)] if ref else []
        if len(found) == 1:
            return found[0]
        if found:
            raise GovernanceError(f"{ref!r} names several requests: {', '.join(sorted(found))}")
        raise NotFoundError(
            f"there is no promotion request {ref!r}; `pipetrail model history` lists them"
        )

    def approve(self, request: str, *, comment: str = "") -> dict[str, Any]:
        """Approve a request; when that completes its policy, move the alias too.

        Returns:
            ``request_id``, ``status``, ``approvals`` (distinct people), ``needed``,
            ``moved`` (whether the alias moved) and ``alias``/``model``/``version``.
        """
        return self._vote(request, comment, EventKind.PROMOTION_APPROVED)

    def reject(self, request: str, *, comment: str = "") -> dict[str, Any]:
        """Reject a request (it is then closed)."""
        return self._vote(request, comment, EventKind.PROMOTION_REJECTED)

    def _vote(self, ref: str, comment: str, kind: EventKind) -> dict[str, Any]:
        outcome: dict[str, Any] = {}

        def build(state: GovernanceState, db: Driver) -> list[EventDraft]:
            request = state.requests[self.resolve_request(state, ref)]
            drafts = [
                self._sign(
                    kind,
                    {
                        "request_id": request.request_id,
                        "request_digest": request_digest(request.content),
                        "comment": comment,
                    },
                )
            ]
            needed = int(request.policy.get("approvals", 1))
            completes = (
                kind == EventKind.PROMOTION_APPROVED and len(request.approvals) + 1 >= needed
            )
            if completes:
                move: dict[str, Any] = {
                    "model": request.model,
                    "alias": request.alias,
                    "version": request.version,
                    "previous": state.alias_version(request.model, request.alias),
                    "cause": "promotion",
                    "request_id": request.request_id,
                }
                if request.content.get("rollback") is True:
                    move.update(cause="rollback", reason=request.content["rationale"])
                drafts.append(self._sign(EventKind.ALIAS_MOVED, move))
            outcome.update(
                request_id=request.request_id,
                model=request.model,
                version=request.version,
                alias=request.alias,
                approvals=len(request.approvals) + (kind == EventKind.PROMOTION_APPROVED),
                needed=needed,
                moved=completes,
                status=(
                    "rejected"
                    if kind == EventKind.PROMOTION_REJECTED
                    else "approved"
                    if completes
                    else "open"
                ),
            )
            return drafts

        self._act(build)
        return outcome

    def rollback(self, model: str, alias: str, *, reason: str) -> dict[str, Any]:
        """Move ``alias`` of ``model`` back to the version it pointed at before.

        Under the alias's policy ``rollback = "approver"`` (the default) an approver or
        admin does it alone, at once; under ``rollback = "request"`` this opens a request
        (``request_id`` in the result) that moves the alias once approved like a promotion.
        """
        from pipetrail.governance.policy import AliasPolicy, load_policies

        policy = load_policies(self.project.root).get(alias) or AliasPolicy()
        outcome: dict[str, Any] = {"model": model, "alias": alias}

        def build(state: GovernanceState, db: Driver) -> list[EventDraft]:
            if model not in state.models:
                raise NotFoundError(f"there is no model {model!r}; see `pipetrail model list`")
            stack = state.aliases.get(model, {}).get(alias, [])
            if len(stack) < 2:
                where = f"points at version {stack[-1]}" if stack else "points nowhere"
                raise GovernanceError(
                    f"{alias} of {model} has no previous version to roll back to: it {where} "
                    "and no earlier promotion moved it; nothing was recorded"
                )
            outcome.update(version=stack[-2], previous=stack[-1])
            if policy.rollback == "request":
                outcome.update(request_id="req-" + secrets.token_hex(5), status="open")
                content = {
                    "request_id": outcome["request_id"],
                    "model": model,
                    "version": stack[-2],
                    "digest": state.models[model][stack[-2]].digest,
                    "alias": alias,
                    "rollback": True,
                    "rationale": reason,
                    "risk": "low",
                    "risk_notes": f"back to the version before {stack[-1]}",
                    "checks": [],
                    "policy": policy.frozen(),
                }
                return [self._sign(EventKind.PROMOTION_REQUESTED, content)]
            outcome["status"] = "moved"
            content = {
                "model": model,
                "alias": alias,
                "version": stack[-2],
                "previous": stack[-1],
                "cause": "rollback",
                "reason": reason,
                "policy_rollback": policy.rollback,
            }
            return [self._sign(EventKind.ALIAS_MOVED, content)]

        self._act(build)
        return outcome

    # -- decisions -------------------------------------------------------------------
    def decide(self, about: str, kind: str, text: str) -> dict[str, Any]:
        """Record a signed decision about a run (id, prefix, ``latest``) or a model."""
        content: dict[str, Any] = {"kind": kind, "text": text}
        run_id: str | None = None
        state = self.state()
        name, _, version = about.partition(":")
        if name in state.models:
            target: dict[str, Any] = {"model": name}
            if version:
                target["version"] = parse_model_ref(about)[1]
        else:
            try:
                run_id = self.project.reader().resolve_run(about)
            except NotFoundError:
                raise NotFoundError(
                    f"{about!r} names no model and no run; give a run id (or prefix, or "
                    "'latest') or a model name (`pipetrail model list`)"
                ) from None
            target = {"run_id": run_id}
        content["about"] = target
        self._act(lambda state, db: [self._sign(EventKind.DECISION_RECORDED, content, run_id)])
        return content
