"""What people add to a run after the fact: its name, tags and notes, as ledger events.

Each is an event of its own (``run.named``, ``run.tagged``, ``run.untagged``,
``run.noted``) appended to the hash chain and projected into ``runs.name``, ``run_tags``
and ``run_notes``, so it is audited like the rest of the record. A name and tags may also
be given when the run starts (``name`` and ``tags`` in the ``run.started`` payload).

This module validates what is added (one message saying what is wrong and how to fix it)
and builds the events; appending them is the caller's (one ledger transaction). The
event types are imported by the functions that build one: the readers of names, tags and
purposes (``pipetrail runs``) do not import them, nor the hashing they bring in.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from pipetrail.errors import ParamError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pipetrail.ledger.events import EventDraft

__all__ = [
    "MAX_NAME",
    "MAX_NOTE",
    "MAX_TAG_VALUE",
    "PURPOSES",
    "name_draft",
    "note_draft",
    "parse_tag_assignments",
    "tag_draft",
    "untag_draft",
    "validate_name",
    "validate_tag_key",
    "validate_tags",
]

MAX_NAME = 200
MAX_NOTE = 10_000
MAX_TAG_VALUE = 500
TAG_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_.:/-]{0,63}")
PURPOSES = ("run", "reproduce", "check")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_tag_key(key: Any) -> str:
    """Return ``key`` when it is a valid tag key.

    Raises:
        ParamError: saying what is wrong with it.
    """
    if not isinstance(key, str) or not TAG_KEY.fullmatch(key):
        raise ParamError(
            f"tag key {key!r} is not valid: a tag key starts with a letter and holds up to "
            "64 letters, digits and the characters _ . : / - (for example `stage` or "
            "`team/owner`)"
        )
    return key


def _tag_value(key: str, value: Any) -> str:
    if isinstance(value, bool | int | float) and not isinstance(value, complex):
        value = str(value).lower() if isinstance(value, bool) else str(value)
    if not isinstance(value, str):
        raise ParamError(
            f"tag {key!r}: its value must be text (or a number), not {type(value).__name__}"
        )
    if len(value) > MAX_TAG_VALUE or _CONTROL.search(value):
        raise ParamError(
            f"tag {key!r}: its value must be one line of at most {MAX_TAG_VALUE} characters"
        )
    return value


def validate_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    """Return ``tags`` with every key checked and every value as text.

    Raises:
        ParamError: a key or value is not valid (the message names it).
    """
    return {validate_tag_key(k): _tag_value(k, v) for k, v in tags.items()}


def parse_tag_assignments(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Parse ``KEY=VALUE`` texts (as ``--tag`` takes them) into validated tags.

    Raises:
        ParamError: an item has no ``=``, or a key or value is not valid.
    """
    tags: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ParamError(f"tag {item!r} must be KEY=VALUE (for example stage=baseline)")
        tags[key.strip()] = value
    return validate_tags(tags)


def validate_name(name: Any) -> str:
    """Return a valid run name (surrounding spaces removed).

    Raises:
        ParamError: the name is empty, too long, not text, or holds control characters.
    """
    if not isinstance(name, str) or not name.strip():
        raise ParamError(f"a run name must be non-empty text, not {name!r}")
    text = str(name).strip()
    if len(text) > MAX_NAME or _CONTROL.search(text):
        raise ParamError(
            f"run name {text[:40]!r}: a run name is one line of at most {MAX_NAME} characters"
        )
    return text


def name_draft(run_id: str, name: Any) -> EventDraft:
    """The ``run.named`` event giving ``run_id`` a name.

    Raises:
        ParamError: the name is not valid.
    """
    from pipetrail.ledger.events import EventDraft, EventKind

    return EventDraft(
        EventKind.RUN_NAMED, {"run_id": run_id, "name": validate_name(name)}, run_id=run_id
    )


def tag_draft(run_id: str, tags: Mapping[str, Any]) -> EventDraft:
    """The ``run.tagged`` event setting ``tags`` on ``run_id`` (a key set again is replaced).

    Raises:
        ParamError: no tags, or a key or value is not valid.
    """
    if not tags:
        raise ParamError("give at least one tag KEY=VALUE")
    from pipetrail.ledger.events import EventDraft, EventKind

    return EventDraft(
        EventKind.RUN_TAGGED, {"run_id": run_id, "tags": validate_tags(tags)}, run_id=run_id
    )


def untag_draft(run_id: str, keys: list[str] | tuple[str, ...], present: set[str]) -> EventDraft:
    """The ``run.untagged`` event removing tag ``keys`` from ``run_id``.

    Args:
        run_id: the run.
        keys: the tag keys to remove.
        present: the keys the run has now (a key it does not have is refused).

    Raises:
        ParamError: no key, a key is not valid, or the run has no such tag.
    """
    if not keys:
        raise ParamError("give at least one tag key to remove")
    for key in keys:
        validate_tag_key(key)
        if key not in present:
            have = ", ".join(sorted(present)) or "none"
            raise ParamError(f"run {run_id} has no tag {key!r}; its tags are: {have}")
    from pipetrail.ledger.events import EventDraft, EventKind

    return EventDraft(
        EventKind.RUN_UNTAGGED, {"run_id": run_id, "keys": sorted(set(keys))}, run_id=run_id
    )


def note_draft(run_id: str, text: Any) -> EventDraft:
    """The ``run.noted`` event adding a note to ``run_id``.

    Raises:
        ParamError: the note is empty, not text, or longer than :data:`MAX_NOTE`.
    """
    if not isinstance(text, str) or not text.strip():
        raise ParamError(f"a note must be non-empty text, not {text!r}")
    if len(text) > MAX_NOTE:
        raise ParamError(f"a note holds at most {MAX_NOTE} characters, this one {len(text)}")
    from pipetrail.ledger.events import EventDraft, EventKind

    return EventDraft(EventKind.RUN_NOTED, {"run_id": run_id, "text": text}, run_id=run_id)
