"""The rules every governance event must meet: its signature, then the act itself.

:func:`apply_verified` is the single place those rules live. The fold
(:func:`~pipetrail.governance.state.load_state`) runs it on every stored event, and every
governance action runs it on the event it is about to append, under the ledger's write
lock, before appending it: what the library refuses and what the fold would not count
are the same thing, and a refusal raised here is the message the user sees.

The rules, by kind:

* every event: ``by`` is a user (the very first ``user.added`` excepted: it adds its own
  signer, as admin, to a project without users), ``key_id`` is the key that user holds at
  this point of the ledger (not one a rotation replaced), and ``signature`` verifies;
* ``user.added``, ``user.granted``, ``user.revoked``: the signer may manage users; the last
  admin keeps the role; ``user.key_rotated``: the user themself, or an admin;
* ``model.registered``: the signer may register, and the version is the next one;
* ``promotion.requested``: the signer may request; the version and its digest exist;
  every frozen check passed;
* ``promotion.approved`` / ``promotion.rejected``: the signer may approve, holds a role the
  frozen policy accepts, is no service account, is not the requester, has not voted on it
  yet (one person once: identities sharing a key count as one), and signs the request's
  exact content digest; the request is still open;
* ``alias.moved``: a move on a request (a promotion, or a rollback under a policy with
  ``rollback = "request"``) follows the approval that completed it, signed by that
  approver; a rollback moves the alias back to the version before, with a reason, and
  without a request only by someone who may roll back, under ``rollback = "approver"``;
* ``decision.recorded``: the signer may record decisions;
* ``access.granted`` / ``access.revoked``: the signer may grant access (admin); the user
  exists, the label is sensitive, the grant has a purpose (:mod:`pipetrail.governance.grants`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pipetrail.errors import GovernanceError, IdentityError, PermissionDeniedError
from pipetrail.governance.grants import GRANT_HANDLERS
from pipetrail.governance.identity import signed_content
from pipetrail.governance.keys import (
    check_name,
    parse_public_key,
    signing_message,
    verify_signature,
)
from pipetrail.governance.roles import Action, Role, authorize, parse_role
from pipetrail.governance.state import (
    Approval,
    Entry,
    KeyPeriod,
    ModelVersion,
    Request,
    User,
)
from pipetrail.hashing import digest_value
from pipetrail.ledger.events import Event, EventKind

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.governance.keys import PublicKey
    from pipetrail.governance.state import GovernanceState

__all__ = ["DECISION_KINDS", "RISKS", "apply_verified", "check_model_name", "request_digest"]

RISKS = ("low", "medium", "high")
DECISION_KINDS = ("scoping", "split", "sharing", "other")
USER_KINDS = ("person", "service")
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_ALIAS = re.compile(r"[a-z][a-z0-9_-]{0,63}")


def check_model_name(name: str) -> str:
    """Return ``name`` when it can name a model; else refuse, saying what is allowed."""
    if not _MODEL_NAME.fullmatch(name):
        raise GovernanceError(
            f"{name!r} cannot name a model: use 1-100 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (for example 'churn')"
        )
    return name


def check_alias(name: str) -> str:
    """Return ``name`` when it can name an alias (``production``, ``staging``...)."""
    if not _ALIAS.fullmatch(name):
        raise GovernanceError(
            f"{name!r} cannot name an alias: use lowercase letters, digits, '_' or '-', "
            "starting with a letter (for example 'production')"
        )
    return name


def request_digest(content: dict[str, Any]) -> str:
    """The digest of a request's signed content: what approvers sign."""
    return digest_value(signed_content(content))


def apply_verified(
    state: GovernanceState, event: Event, content: dict[str, Any], *, checked: bool = False
) -> None:
    """Check ``event``'s signature and rules against ``state``; apply it, or raise.

    ``checked``: the signature was verified before (by this user, see
    :mod:`pipetrail.governance.verified`): everything else is still checked.

    Raises:
        IdentityError: unknown signer, or a key it does not hold (any more).
        PermissionDeniedError: the signer's roles do not allow the act.
        GovernanceError: the signature does not verify, or the act breaks a rule.
    """
    signer = _check_signature(state, event, content, checked)
    handler = _HANDLERS.get(event.kind)
    if handler is None:
        raise GovernanceError(f"{event.kind!r} is not a governance event kind")
    handler(state, event, content, signer)
    entry = Entry(event.seq, event.ts, event.kind, str(content["by"]), content, "verified")
    state.entries.append(entry)
    if event.kind == EventKind.DECISION_RECORDED:
        state.decisions.append(entry)


def _check_signature(
    state: GovernanceState, event: Event, content: dict[str, Any], checked: bool
) -> User | None:
    by, key_id, signature = content.get("by"), content.get("key_id"), content.get("signature")
    if not isinstance(by, str) or not isinstance(key_id, str) or not isinstance(signature, str):
        raise GovernanceError("it carries no signer, key id and signature")
    user = state.users.get(by)
    key: PublicKey
    if user is None:
        if event.kind == EventKind.USER_ADDED and not state.users and content.get("user") == by:
            key = parse_public_key(str(content.get("public_key", "")))  # the first admin
        else:
            raise IdentityError(
                f"{by!r} is not a user of this project; an admin adds them with "
                f"`pipetrail user add {by} --key PUBLIC_KEY`"
            )
    else:
        key = user.current_key
        if key.key_id != key_id:
            for period in user.keys:
                if period.key.key_id == key_id:
                    raise IdentityError(
                        f"the key {key_id} of {by} was revoked when it was rotated (event "
                        f"{period.until_seq}); {by} signs with {key.key_id} now: point "
                        "PIPETRAIL_HOME at the folder holding that key"
                    )
            raise IdentityError(
                f"{key_id} is not a key of {by} (theirs is {key.key_id}); point PIPETRAIL_HOME "
                f"at the folder holding {by}'s key, or ask an admin to rotate it"
            )
    if key.key_id != key_id:
        raise IdentityError(f"{key_id} is not the key {by} was added with ({key.key_id})")
    if checked:
        state.cached += 1
        return user
    verdict = state.verdicts.get(event.seq)
    if verdict is not None and verdict[0] == key.raw:
        verified = verdict[1]  # checked with this very key by audit verify's second process
    else:
        message = signing_message(event.kind, signed_content(content))
        verified = verify_signature(key, message, signature)
    if not verified:
        raise GovernanceError(
            f"its signature does not verify with the key of {by} ({key.key_id}): the event "
            "was altered or forged"
        )
    state.signatures += 1
    return user


def _actor(signer: User | None, action: Action) -> User:
    if signer is None:
        raise IdentityError("only the first admin may sign before being added")
    authorize(signer.name, signer.roles, action)
    return signer


def _text(content: dict[str, Any], key: str, what: str) -> str:
    value = content.get(key)
    if not isinstance(value, str) or not value.strip():
        raise GovernanceError(f"{what} must not be empty")
    return value


def _user_added(state: GovernanceState, ev: Event, p: dict[str, Any], signer: User | None) -> None:
    name = check_name(str(p.get("user", "")))
    roles = {parse_role(str(r)) for r in p.get("roles") or []}
    if signer is None:
        if roles != {Role.ADMIN}:
            raise PermissionDeniedError("the first user of a project must be added as admin")
    else:
        _actor(signer, Action.MANAGE_USERS)
    if name in state.users:
        raise GovernanceError(
            f"{name!r} is already a user; grant roles with `pipetrail user grant`"
        )
    kind = p.get("kind")
    if kind not in USER_KINDS:
        raise GovernanceError(f"a user is a {' or a '.join(USER_KINDS)}, not {kind!r}")
    key = parse_public_key(str(p.get("public_key", "")))
    state.users[name] = User(
        name,
        p.get("email") or None,
        str(kind),
        roles,
        [KeyPeriod(key, ev.seq)],
        ev.seq,
        str(p["by"]),
    )


def _target(state: GovernanceState, p: dict[str, Any]) -> User:
    name = str(p.get("user", ""))
    user = state.users.get(name)
    if user is None:
        raise IdentityError(f"{name!r} is not a user of this project; add them first")
    return user


def _user_granted(
    state: GovernanceState, ev: Event, p: dict[str, Any], signer: User | None
) -> None:
    _actor(signer, Action.MANAGE_USERS)
    user, role = _target(state, p), parse_role(str(p.get("role", "")))
    if role in user.roles:
        raise GovernanceError(f"{user.name} already holds the role {role.value}")
    user.roles.add(role)


def _user_revoked(
    state: GovernanceState, ev: Event, p: dict[str, Any], signer: User | None
) -> None:
    _actor(signer, Action.MANAGE_USERS)
    user, role = _target(state, p), parse_role(str(p.get("role", "")))
    if role not in user.roles:
        held = ", ".join(sorted(r.value for r in user.roles)) or "no role"
        raise GovernanceError(f"{user.name} does not hold the role {role.value} (holds {held})")
    if role is Role.ADMIN and not any(
        Role.ADMIN in u.roles for u in state.users.values() if u.name != user.name
    ):
        raise GovernanceError(f"{user.name} is the last admin; grant admin to someone else first")
    user.roles.discard(role)


def _key_rotated(state: GovernanceState, ev: Event, p: dict[str, Any], signer: User | None) -> None:
    user = _target(state, p)
    if signer is None or signer.name != user.name:
        _actor(signer, Action.MANAGE_USERS)
    key = parse_public_key(str(p.get("public_key", "")))
    if key.raw in user.raw_keys():
        raise GovernanceError(f"{user.name} has held the key {key.key_id} before; make a new one")
    user.keys[-1].until_seq = ev.seq
    user.keys.append(KeyPeriod(key, ev.seq))


def _registered(state: GovernanceState, ev: Event, p: dict[str, Any], signer: User | None) -> None:
    actor = _actor(signer, Action.REGISTER_MODEL)
    model = check_model_name(str(p.get("model", "")))
    versions = state.models.setdefault(model, {})
    if p.get("version") != len(versions) + 1:
        raise GovernanceError(
            f"model {model} has {len(versions)} versions; the next is {len(versions) + 1}, "
            f"not {p.get('version')!r}"
        )
    versions[len(versions) + 1] = ModelVersion(
        model,
        len(versions) + 1,
        _text(p, "digest", "the model's digest"),
        p.get("run_id"),
        p.get("node_id"),
        p.get("output"),
        str(p.get("serializer") or ""),
        actor.name,
        ev.ts,
        ev.seq,
    )


def _version(state: GovernanceState, model: str, version: Any) -> ModelVersion:
    found = state.models.get(model, {}).get(version) if isinstance(version, int) else None
    if found is None:
        known = len(state.models.get(model, {}))
        raise GovernanceError(
            f"model {model} has no version {version!r} ({known} versions registered; "
            "`pipetrail model list` shows them)"
        )
    return found


def _requested(state: GovernanceState, ev: Event, p: dict[str, Any], signer: User | None) -> None:
    rollback = p.get("rollback") is True
    actor = _actor(signer, Action.ROLLBACK if rollback else Action.REQUEST_PROMOTION)
    model = str(p.get("model", ""))
    version = _version(state, model, p.get("version"))
    alias = check_alias(str(p.get("alias", "")))
    if rollback:
        _rollback_target(state, model, alias, version.version)
    if p.get("digest") != version.digest:
        raise GovernanceError(f"the request's digest is not that of {model}:{version.version}")
    if p.get("risk") not in RISKS:
        raise GovernanceError(f"the risk must be one of {', '.join(RISKS)}, not {p.get('risk')!r}")
    _text(p, "rationale", "the rationale")
    request_id = _text(p, "request_id", "the request id")
    if request_id in state.requests:
        raise GovernanceError(f"request {request_id} exists already")
    if not rollback and state.alias_version(model, alias) == version.version:
        raise GovernanceError(f"{alias} of {model} points at version {version.version} already")
    failing = [c for c in p.get("checks") or [] if not c.get("passed")]
    if failing:
        listed = "; ".join(f"{c.get('name')}: {c.get('detail')}" for c in failing)
        raise GovernanceError(
            f"{model}:{version.version} cannot be promoted to {alias}: {len(failing)} "
            f"check(s) of the policy fail: {listed}"
        )
    if not isinstance(p.get("policy"), dict):
        raise GovernanceError("the request carries no policy")
    state.requests[request_id] = Request(
        request_id, model, version.version, alias, p, request_digest(p), actor.name, ev.ts, ev.seq
    )


def _voter(state: GovernanceState, p: dict[str, Any], signer: User | None, what: str) -> Request:
    actor = _actor(signer, Action.APPROVE)
    request_id = str(p.get("request_id", ""))
    request = state.requests.get(request_id)
    if request is None:
        raise GovernanceError(f"there is no promotion request {request_id!r}")
    if request.status != "open":
        raise GovernanceError(
            f"request {request_id} is {request.status} already; it takes no {what}"
        )
    if p.get("request_digest") != request.content_digest:
        raise GovernanceError(
            f"the {what} signs content other than request {request_id}'s "
            "(model digest, checks, rationale, risk)"
        )
    if actor.kind == "service":
        raise PermissionDeniedError(
            f"{actor.name} is a service account; service accounts may not give an {what}"
        )
    accepted = set(request.policy.get("approver_roles") or ())
    if not {r.value for r in actor.roles} & accepted:
        raise PermissionDeniedError(
            f"the policy of request {request_id} accepts {what}s from the role "
            f"{' or '.join(sorted(accepted))} only, and {actor.name} has "
            f"{', '.join(sorted(r.value for r in actor.roles))}"
        )
    if state.same_person(actor.name, request.by):
        who = (
            "requested it"
            if actor.name == request.by
            else f"shares a key with {request.by}, who requested it"
        )
        raise PermissionDeniedError(
            f"{actor.name} may not give the {what} of {request_id}: {actor.name} {who}, and "
            "separation of duties needs someone else"
        )
    for vote in (*request.approvals, *request.rejections):
        if state.same_person(actor.name, vote.by):
            raise GovernanceError(
                f"{actor.name} has already voted on request {request_id} "
                f"(event {vote.seq}, as {vote.by}); one person counts once"
            )
    return request


def _approved(state: GovernanceState, ev: Event, p: dict[str, Any], signer: User | None) -> None:
    request = _voter(state, p, signer, "approval")
    request.approvals.append(Approval(str(p["by"]), str(p.get("comment") or ""), ev.ts, ev.seq))
    if len(request.approvals) >= int(request.policy.get("approvals", 1)):
        request.status = "approved"


def _rejected(state: GovernanceState, ev: Event, p: dict[str, Any], signer: User | None) -> None:
    request = _voter(state, p, signer, "rejection")
    request.rejections.append(Approval(str(p["by"]), str(p.get("comment") or ""), ev.ts, ev.seq))
    request.status = "rejected"


def _moved(state: GovernanceState, ev: Event, p: dict[str, Any], signer: User | None) -> None:
    model, alias = str(p.get("model", "")), str(p.get("alias", ""))
    version = _version(state, model, p.get("version")).version
    current = state.alias_version(model, alias)
    if p.get("previous") != current:
        raise GovernanceError(f"{alias} of {model} points at {current}, not {p.get('previous')}")
    stack = state.aliases.setdefault(model, {}).setdefault(alias, [])
    cause = p.get("cause")
    if cause not in ("promotion", "rollback"):
        raise GovernanceError(f"an alias moves by promotion or rollback, not {cause!r}")
    if cause == "rollback":
        _text(p, "reason", "the reason for a rollback")
        _rollback_target(state, model, alias, version)
    if p.get("request_id") is not None or cause == "promotion":
        request = state.requests.get(str(p.get("request_id", "")))
        if request is None or request.status != "approved" or request.moved_seq is not None:
            raise GovernanceError("an alias moves on a request only when it is approved")
        if (request.model, request.alias, request.version) != (model, alias, version) or (
            request.content.get("rollback") is True
        ) != (cause == "rollback"):
            raise GovernanceError(f"request {request.request_id} does not ask for this move")
        if signer is None or signer.name != request.approvals[-1].by:
            raise GovernanceError("the approval that completes a request moves its alias")
        request.moved_seq = ev.seq
    else:  # a rollback by one approver, as the policy then in force allowed
        actor = _actor(signer, Action.ROLLBACK)
        if p.get("policy_rollback") != "approver":
            raise GovernanceError("a rollback without a request needs rollback = 'approver'")
        if actor.kind == "service":
            raise PermissionDeniedError(f"{actor.name} is a service account; it may not roll back")
    if cause == "rollback":
        stack.pop()
    else:
        stack.append(version)


def _rollback_target(state: GovernanceState, model: str, alias: str, version: int) -> None:
    stack = state.aliases.get(model, {}).get(alias, [])
    if len(stack) < 2:
        where = f"points at version {stack[-1]}" if stack else "points nowhere"
        raise GovernanceError(
            f"{alias} of {model} has no previous version to roll back to (it {where}, and no "
            "earlier promotion moved it); nothing was recorded"
        )
    if version != stack[-2]:
        raise GovernanceError(f"a rollback of {alias} of {model} goes back to version {stack[-2]}")


def _decided(state: GovernanceState, ev: Event, p: dict[str, Any], signer: User | None) -> None:
    _actor(signer, Action.DECIDE)
    if p.get("kind") not in DECISION_KINDS:
        raise GovernanceError(
            f"a decision's kind is one of {', '.join(DECISION_KINDS)}, not {p.get('kind')!r}"
        )
    _text(p, "text", "a decision's text")
    about = p.get("about")
    if not isinstance(about, dict) or not (about.get("run_id") or about.get("model")):
        raise GovernanceError("a decision is about a run or a model")
    if about.get("model") and about["model"] not in state.models:
        raise GovernanceError(f"there is no model {about['model']!r}")


_HANDLERS: dict[str, Callable[[GovernanceState, Event, dict[str, Any], User | None], None]] = {
    EventKind.USER_ADDED: _user_added,
    EventKind.USER_GRANTED: _user_granted,
    EventKind.USER_REVOKED: _user_revoked,
    EventKind.USER_KEY_ROTATED: _key_rotated,
    EventKind.MODEL_REGISTERED: _registered,
    EventKind.PROMOTION_REQUESTED: _requested,
    EventKind.PROMOTION_APPROVED: _approved,
    EventKind.PROMOTION_REJECTED: _rejected,
    EventKind.ALIAS_MOVED: _moved,
    EventKind.DECISION_RECORDED: _decided,
    **GRANT_HANDLERS,
}
