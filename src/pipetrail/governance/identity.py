"""Who is acting: the configured identity, and the signed form of every governance act.

The acting identity is ``$PIPETRAIL_USER`` when set, else ``name`` in the ``[user]`` table
of ``config.toml`` in the key folder (:func:`~pipetrail.governance.keys.key_folder`), else
the operating system's user name; whichever it is must be a valid user name
(:func:`~pipetrail.governance.keys.check_name`). The name is only a claim: what proves it
is the signature every governance event carries, made with that user's private key and
checked against the public key the ledger recorded for them.

:func:`signed_draft` turns the content of an act into the event that records it: it adds
``by`` (the acting user), ``key_id`` (the key that signs) and ``signature``, the Ed25519
signature of :func:`~pipetrail.governance.keys.signing_message` over the event kind and
every other field of the payload.
"""

from __future__ import annotations

import getpass
import os
from typing import TYPE_CHECKING, Any

from pipetrail.errors import IdentityError
from pipetrail.governance.keys import check_name, key_folder, signing_message
from pipetrail.ledger.events import EventDraft, EventKind

if TYPE_CHECKING:
    from pipetrail.governance.keys import Signer

__all__ = ["USER_ENV", "current_user", "signed_content", "signed_draft"]

USER_ENV = "PIPETRAIL_USER"


def current_user() -> str:
    """The name of the acting identity (see the module docstring).

    Raises:
        IdentityError: the configured name is not a valid user name, or the user config
            file cannot be read; the message says where the name came from.
    """
    name = os.environ.get(USER_ENV, "").strip()
    if name:
        return _checked(name, f"${USER_ENV}")
    path = key_folder() / "config.toml"
    if path.is_file():
        import tomllib  # only for this file: every act needs who is acting

        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
            raise IdentityError(f"cannot read the user config {path}: {exc}; fix it") from None
        user = data.get("user")
        found = user.get("name") if isinstance(user, dict) else None
        if isinstance(found, str) and found.strip():
            return _checked(found.strip(), f"[user] name in {path}")
    try:
        system = getpass.getuser()
    except (KeyError, OSError, ImportError):
        raise IdentityError(
            f"cannot tell who is acting: set {USER_ENV}, or name = ... under [user] in {path}"
        ) from None
    return _checked(system.lower(), "the system user name")


def _checked(name: str, origin: str) -> str:
    try:
        return check_name(name)
    except IdentityError as exc:
        raise IdentityError(f"{exc} (the name came from {origin})") from None


def signed_content(payload: dict[str, Any]) -> dict[str, Any]:
    """The part of a governance payload its signature covers: everything but ``signature``."""
    return {k: v for k, v in payload.items() if k != "signature"}


def signed_draft(
    kind: EventKind, content: dict[str, Any], signer: Signer, *, run_id: str | None = None
) -> EventDraft:
    """The event recording ``content`` as an act of ``signer`` (``by``, ``key_id``, signature)."""
    payload = {**content, "by": signer.name, "key_id": signer.public_key.key_id}
    payload["signature"] = signer.sign(signing_message(str(kind), payload))
    return EventDraft(kind, payload, run_id)
