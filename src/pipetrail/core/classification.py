"""Classification labels: how sensitive a source or a step output is.

A label is one of :data:`LABELS`, from the least to the most sensitive:

* ``public``: may be shared freely (the default: no label recorded);
* ``internal``: for the project's people, not sensitive;
* ``confidential``: business secrets, sensitive;
* ``pii``: personal data, identifying people directly or indirectly, sensitive;
* ``phi``: health data about people, sensitive.

Content labelled sensitive (:data:`SENSITIVE`) is stored encrypted and recorded under a
keyed digest (docs/adr/0023-keyed-digests.md). Labels flow down lineage: an output is at
least as sensitive as the most sensitive input of its step (:func:`strictest`), unless
the step declares a lower label and records a privacy operation that declassifies
(:mod:`pipetrail.execution.classification`). This module is pure: no I/O, no imports
beyond the standard library and :mod:`pipetrail.errors`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipetrail.errors import DefinitionError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "LABELS",
    "PUBLIC",
    "SENSITIVE",
    "is_sensitive",
    "step_labels",
    "strictest",
    "validate_label",
]

#: Every label, least sensitive first (the order :func:`strictest` uses).
LABELS: tuple[str, ...] = ("public", "internal", "confidential", "pii", "phi")
PUBLIC = "public"
#: The labels whose content is encrypted at rest and recorded under keyed digests.
SENSITIVE = frozenset({"confidential", "pii", "phi"})
_RANK = {label: rank for rank, label in enumerate(LABELS)}


def validate_label(label: object, where: str) -> str:
    """Return ``label`` if it is a known label.

    Args:
        label: the value given.
        where: what it labels, for the message (``source('data/p.csv')``, ``step 'x'``).

    Raises:
        DefinitionError: not one of :data:`LABELS`.
    """
    if isinstance(label, str) and label in _RANK:
        return label
    raise DefinitionError(
        f"{where}: classification {label!r} is not a known label; use one of "
        f"{', '.join(LABELS)} (see docs/data-handling.md)"
    )


def is_sensitive(label: str | None) -> bool:
    """Whether content with ``label`` is encrypted at rest."""
    return label in SENSITIVE


def strictest(labels: Iterable[str | None]) -> str:
    """The most sensitive of ``labels`` (``public`` for none)."""
    found = PUBLIC
    for label in labels:
        if label is not None and _RANK[label] > _RANK[found]:
            found = label
    return found


def step_labels(
    step: str, outputs: tuple[str, ...], declared: str | Mapping[str, str] | None
) -> dict[str, str]:
    """Validate ``@step(classification=...)``: output name -> label.

    A plain label applies to every output; a mapping names outputs.

    Raises:
        DefinitionError: an unknown label, or a mapping key that is not an output.
    """
    if declared is None:
        return {}
    where = f"step {step!r}"
    if isinstance(declared, str):
        label = validate_label(declared, where)
        return dict.fromkeys(outputs, label)
    if not hasattr(declared, "items"):
        raise DefinitionError(
            f"{where}: classification= takes a label or {{output name: label}}, got "
            f"{type(declared).__name__}"
        )
    found: dict[str, str] = {}
    for name, label in declared.items():
        if name not in outputs:
            raise DefinitionError(
                f"{where}: classification names the output {name!r}, but the step's outputs "
                f"are {', '.join(repr(o) for o in outputs)}"
            )
        found[name] = validate_label(label, f"{where} output {name!r}")
    return found
