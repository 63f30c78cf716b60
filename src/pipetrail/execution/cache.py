"""Cache keys: what a step's result depends on, and how to explain a change.

A key is the digest of its *components*: the step's name, code fingerprint (its own
normalized source plus the project-local code it calls), declared version, output names,
input digests and how each loaded input is read (its format, type and reading: equal
bytes read as ``bytes`` or as a ``Path`` are different inputs), parameter fingerprints,
the versions of the distributions its code imports, its derived seed, and whether pickle
was allowed. Components are recorded with every step run, so ``pipetrail why`` can say
which one changed. See docs/adr/0004-cache-keys.md and
docs/adr/0013-how-an-output-is-read.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from blake3 import blake3

from pipetrail.hashing.canonical import (
    checked_canonical_bytes,
    checked_plain_bytes,
    is_plain_but,
)
from pipetrail.hashing.digest import DIGEST_PREFIX

if TYPE_CHECKING:
    from pipetrail.store.serializers.base import StoredArtifact

__all__ = [
    "KEY_FORMAT",
    "CacheDecision",
    "KeyChange",
    "cache_key",
    "checked_cache_key",
    "explain_change",
]

KEY_FORMAT = "pt-key1"

# The order in which `why` lists components.
COMPONENT_ORDER = (
    "step",
    "code",
    "code_parts",
    "version",
    "output_names",
    "inputs",
    "input_formats",
    "params",
    "distributions",
    "seed",
    "allow_pickle",
)


@dataclass(frozen=True, init=False)
class CacheDecision:
    """Whether a step executes or reuses a previous result, and why.

    Attributes:
        decision: ``hit``, ``miss``, ``disabled`` or ``forced-miss``.
        reason: a human-readable explanation.
        reused_step_run_id: the executed step run whose outputs a hit reuses.
        outputs: output name -> artifact digest for a hit.
        formats: output name -> how it is read, for a hit (the ``output_formats`` of
            the step event it reuses).
        records: output name -> the record each output is loaded with, as ``formats``
            says, for a hit whose outputs were checked in the store (made once, there).
    """

    decision: str
    reason: str
    reused_step_run_id: str | None = None
    outputs: dict[str, str] | None = None
    formats: dict[str, Any] | None = None
    records: dict[str, StoredArtifact] | None = field(default=None, compare=False, repr=False)

    def __init__(
        self,
        decision: str,
        reason: str,
        reused_step_run_id: str | None = None,
        outputs: dict[str, str] | None = None,
        formats: dict[str, Any] | None = None,
        records: dict[str, StoredArtifact] | None = None,
    ) -> None:
        # What the generated __init__ does (one object.__setattr__ per field, since the
        # class is frozen) in one step: a run decides every step.
        self.__dict__.update(
            decision=decision,
            reason=reason,
            reused_step_run_id=reused_step_run_id,
            outputs=outputs,
            formats=formats,
            records=records,
        )


def cache_key(components: dict[str, Any]) -> str:
    """Return the digest of a step's key components.

    ``code_parts`` is descriptive (it explains ``code``) and is left out of the digest.
    """
    return checked_cache_key(components)[0]


def checked_cache_key(
    components: dict[str, Any], known: frozenset[str] = frozenset()
) -> tuple[str, bool]:
    """Return :func:`cache_key` and whether orjson encoded the components it covers.

    When it did, every component but ``code_parts`` is plain: orjson writes it as the
    reference encoder does (see :func:`~pipetrail.hashing.canonical.checked_canonical_bytes`).
    ``known``: components the caller already showed plain (the same objects for every
    node of a step, checked once), which are not walked again.
    """
    keyed = dict(components)  # a copy made in C, without the descriptive part
    keyed.pop("code_parts", None)
    wrapped = {"format": KEY_FORMAT, "components": keyed}
    if is_plain_but(keyed, known):  # the format is a plain string: so is wrapped
        data, plain = checked_plain_bytes(wrapped)
    else:
        data, plain = checked_canonical_bytes(wrapped)
    return DIGEST_PREFIX + blake3(data).hexdigest(), plain


@dataclass(frozen=True)
class KeyChange:
    """One component's value now and in the previous run of the step."""

    component: str
    changed: bool
    now: Any
    before: Any
    detail: list[str]


def _dict_changes(now: dict[str, Any], before: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for key in sorted(set(now) | set(before)):
        if key not in before:
            lines.append(f"+ {key}: {_short(now[key])}")
        elif key not in now:
            lines.append(f"- {key}: {_short(before[key])}")
        elif now[key] != before[key]:
            lines.append(f"~ {key}: {_short(before[key])} -> {_short(now[key])}")
    return lines


def _short(value: Any) -> str:
    text = str(value)
    if text.startswith("blake3:"):
        return text[7:19]
    return text if len(text) <= 60 else text[:57] + "..."


def explain_change(now: dict[str, Any], before: dict[str, Any] | None) -> list[KeyChange]:
    """Compare the key components of two step runs, component by component.

    Args:
        now: components of the step run being explained.
        before: components of the previous run of the same step (None if there is none).

    Returns:
        One entry per component, in :data:`COMPONENT_ORDER`, marking what changed.
    """
    changes: list[KeyChange] = []
    keys = [k for k in COMPONENT_ORDER if k in now or (before and k in before)]
    keys += sorted(set(now) - set(keys))
    for key in keys:
        value = now.get(key)
        old = None if before is None else before.get(key)
        changed = before is not None and value != old
        detail: list[str] = []
        if changed and isinstance(value, dict) and isinstance(old, dict):
            detail = _dict_changes(value, old)
        changes.append(KeyChange(key, changed, value, old, detail))
    return changes
