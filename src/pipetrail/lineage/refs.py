"""Resolve what a user typed (a digest, run id or step run id, or a prefix) to a target.

Owns :func:`resolve_ref`, used by every lineage query and the CLI. Prefixes are looked
up with a range on each indexed id column, the same SQL on SQLite and PostgreSQL, so a
ledger of millions of artifacts answers without a scan. Imports the ledger's reader and
the lineage model; never cli.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pipetrail.errors import AmbiguousPrefixError, NotFoundError
from pipetrail.lineage.graph import Target

if TYPE_CHECKING:
    from pipetrail.ledger import Reader

__all__ = ["resolve_ref", "upper_bound"]

# Prefix look-ups: a range on the indexed column finds the candidates without a scan
# (LIKE cannot use these indexes on SQLite); LIKE then confirms each one.
_PREFIX = "SELECT {0} AS id FROM {1} WHERE {0} >= :lo AND {0} < :hi AND {0} LIKE :p"
_CANDIDATES = {
    "artifact": _PREFIX.format("digest", "artifacts")
    + " UNION "
    + _PREFIX.format("digest", "sources")
    + " ORDER BY id LIMIT 6",
    "run": _PREFIX.format("run_id", "runs") + " ORDER BY id LIMIT 6",
    "step_run": _PREFIX.format("step_run_id", "step_runs") + " ORDER BY id LIMIT 6",
}
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
    kinds = ["artifact"] if body != text else ["artifact", "run", "step_run"]
    found: list[Target] = []
    for kind in kinds:
        prefix = body.lower() if kind == "artifact" else body.upper()
        if not prefix or not (_HEX if kind == "artifact" else _ID).fullmatch(prefix):
            continue
        if kind == "artifact":
            prefix = "blake3:" + prefix
        rows = reader.fetch(
            _CANDIDATES[kind],
            {"lo": prefix, "hi": upper_bound(prefix), "p": prefix + "%"},
        )
        found.extend(Target(kind, str(row["id"])) for row in rows)  # type: ignore[arg-type]
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


def upper_bound(prefix: str) -> str:
    """The smallest string above every string starting with ``prefix``.

    Digests are lowercase hex and ids Crockford base32 (uppercase): the bound stays in
    those alphabets (``9`` -> ``a``/``A``, not ``:``) so that it also holds under the
    linguistic collations a PostgreSQL database may use.
    """
    chars = list(prefix)
    while chars:
        last = chars.pop()
        if last == "9":
            return "".join(chars) + ("a" if prefix.startswith("blake3:") else "A")
        if last != "Z":
            return "".join(chars) + chr(ord(last) + 1)
    return "~"
