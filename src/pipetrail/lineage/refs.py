"""Resolve what a user typed (a digest, run id or step run id, or a prefix) to a target.

Owns :func:`resolve_ref`, used by every lineage query and the CLI. Prefixes are looked
up by the ledger (:func:`pipetrail.ledger.lineage_reads.prefix_candidates`: a range on
each indexed id column, so a ledger of millions of artifacts answers without a scan).
Imports the ledger's reads and the lineage model; never cli.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pipetrail.errors import AmbiguousPrefixError, NotFoundError
from pipetrail.ledger.lineage_reads import RefKind, prefix_candidates
from pipetrail.ledger.lineage_reads import upper_bound as upper_bound
from pipetrail.lineage.graph import Target

if TYPE_CHECKING:
    from pipetrail.ledger import Reader

__all__ = ["resolve_ref", "upper_bound"]

_HEX = re.compile(r"[0-9a-f]+")
_ID = re.compile(r"[0-9A-Z]+")


def resolve_ref(reader: Reader, ref: str) -> Target:
    """Resolve what a user typed into an artifact digest, a run id or a step run id.

    Accepts a digest or unique prefix (with or without ``blake3:``), a run id, unique
    prefix or ``latest``, and a step run id or unique prefix. Case does not matter.

    Raises:
        NotFoundError: nothing matches.
        AmbiguousPrefixError: several objects match; the message names them.
    """
    text = ref.strip()
    if text in ("latest", "last", "@"):
        return Target("run", reader.resolve_run(text))
    body = text.removeprefix("blake3:").removeprefix("BLAKE3:")
    kinds: list[RefKind] = ["artifact"] if body != text else ["artifact", "run", "step_run"]
    found: list[Target] = []
    for kind in kinds:
        prefix = body.lower() if kind == "artifact" else body.upper()
        if not prefix or not (_HEX if kind == "artifact" else _ID).fullmatch(prefix):
            continue
        if kind == "artifact":
            prefix = "blake3:" + prefix
        found.extend(Target(kind, found_id) for found_id in prefix_candidates(reader, kind, prefix))
    if not found:
        raise NotFoundError(
            f"nothing matches {ref!r}: it is not a digest, run id or step run id (or a "
            "prefix of one) in this project; list runs with `pipetrail runs` and their "
            "artifacts with `pipetrail show RUN`"
        )
    if len(found) > 1:
        shown = ", ".join(f"{t.kind.replace('_', ' ')} {t.id}" for t in found[:5])
        more = ", ..." if len(found) > 5 else ""
        raise AmbiguousPrefixError(
            f"{ref!r} matches several objects ({shown}{more}); give more characters"
        )
    return found[0]
