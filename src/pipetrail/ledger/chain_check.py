"""The hot path of the chain walk: an event's chain hash and payload, from its stored row.

``audit verify`` re-hashes every event and parses every payload; on a ledger of a
million events these two dominate. Both have a fast path that gives exactly what the
reference code gives, and falls back to it whenever it could differ:

* :func:`chain_hash` is :func:`~pipetrail.ledger.events.event_hash`, which encodes the
  hashed fields with orjson directly, keys already in canonical (sorted) order, when
  every field has the type pipetrail writes (``seq`` an ``int``, the text fields
  ``str``, ``run_id`` ``str`` or None): for those, orjson's bytes are the canonical
  bytes (pipetrail.hashing.canonical). Anything else (a row someone edited into another
  type) goes through the reference encoder.
* :func:`parse_payload` parses with orjson and accepts the result only when writing it
  back gives the stored text byte for byte, which pipetrail's canonical payloads always
  do; otherwise (an integer beyond 64 bits orjson would turn into a float, a repeated
  key, text that is not canonical) the standard library parses it, as before.

tests/unit/ledger/test_chain_check.py checks both against the reference over generated
rows.

:func:`check_chain` is the walk's loop over a batch of rows: each row's sequence number,
its link to the row before and its hash, with the hashing of :func:`chain_hash` inlined
(one BLAKE3 hasher reused, the raw digest kept). It returns those 32-byte digests for
the Merkle tree (whose leaf data they are, docs/adr/0020), so the tree never decodes the
hex again: a digest is handed on only after the row's stored hash was found to be its
hex text.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import orjson
from blake3 import blake3

from pipetrail.errors import UnhashableValueError
from pipetrail.hashing.canonical import CANONICAL_VERSION
from pipetrail.ledger.events import HASH_FORMAT, event_hash

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "EDITED",
    "MISSING",
    "UNHASHABLE",
    "UNLINKED",
    "chain_hash",
    "check_chain",
    "parse_payload",
    "parse_plain_payload",
]

_SORT = orjson.OPT_SORT_KEYS


def chain_hash(
    seq: Any, ts: Any, actor: Any, kind: Any, run_id: Any, payload: Any, prev: Any
) -> str:
    """The chain hash of one stored row's fields, as :func:`event_hash` computes it.

    Its fast path takes fields of the types the ledger writes; any other goes to the
    reference encoder, which decides or says what is wrong.
    """
    return event_hash(
        seq=seq, ts=ts, actor=actor, kind=kind, run_id=run_id, payload_text=payload, prev_hash=prev
    )


EDITED = "its content does not match its hash (the row was edited)"
UNLINKED = "its prev_hash does not match the hash of the event before it"
MISSING = "event {expected} is missing (the next stored event is {seq})"
UNHASHABLE = (
    "a field holds a value of a type pipetrail never writes, which has no hash (the row was edited)"
)
_PREFIX = "blake3:"
# The hashed fields of an event, in canonical (sorted) key order (see event_hash).
_FIELDS = ("actor", "format", "kind", "payload", "prev", "run_id", "seq", "ts")


def check_chain(
    rows: Sequence[Sequence[Any]], expected: int, prev: str
) -> tuple[list[bytes], tuple[int, str] | None]:
    """Check stored event rows in order against the chain so far.

    Each row is ``(seq, ts, actor, kind, run_id, payload, prev_hash, hash)``; the chain so
    far ends at event ``expected - 1`` whose hash is ``prev``. A row verifies when its
    ``seq`` is ``expected``, its ``prev_hash`` is the hash of the row before it, and its
    ``hash`` is the chain hash of its fields (as :func:`chain_hash` gives it, which the
    loop below inlines for rows of the types pipetrail writes).

    A row with a field the reference cannot hash at all (a ``BLOB`` where pipetrail
    writes text, a string with a lone surrogate) cannot be one pipetrail wrote: it fails
    as edited, where the reference would raise.

    Returns:
        The raw chain hash (32 bytes) of every row that verifies, up to the first that
        does not, and that row's sequence number and what is wrong with it (None when
        every row verifies).
    """
    digests: list[bytes] = []
    keep = digests.append
    hasher = blake3()
    reset, update, digest = hasher.reset, hasher.update, hasher.digest
    dumps = orjson.dumps
    version = CANONICAL_VERSION
    # The hashed fields of the row at hand, keys in canonical (sorted) order: one dict
    # whose values are replaced for each row costs less than a dict made and freed per
    # row (orjson writes a dict's members in their order, so the bytes are the same).
    fields: dict[str, Any] = dict.fromkeys(_FIELDS)
    fields["format"] = HASH_FORMAT
    for seq, ts, actor, kind, run_id, payload, prev_hash, stored in rows:
        if seq != expected:
            return digests, (expected, MISSING.format(expected=expected, seq=seq))
        if prev_hash != prev:
            return digests, (seq, UNLINKED)
        body = None
        if (
            type(seq) is int
            and type(ts) is str
            and type(actor) is str
            and type(kind) is str
            and type(payload) is str
            and type(prev_hash) is str
            and (run_id is None or type(run_id) is str)
        ):
            fields["actor"] = actor
            fields["kind"] = kind
            fields["payload"] = payload
            fields["prev"] = prev_hash
            fields["run_id"] = run_id
            fields["seq"] = seq
            fields["ts"] = ts
            try:
                body = dumps(fields)
            except orjson.JSONEncodeError:
                body = None  # beyond orjson: the reference decides, as in chain_hash
        if body is None:
            try:
                text = chain_hash(seq, ts, actor, kind, run_id, payload, prev_hash)
            except UnhashableValueError:  # a BLOB, a lone surrogate: nothing pipetrail wrote
                return digests, (seq, UNHASHABLE)
            raw = bytes.fromhex(text.removeprefix(_PREFIX))
        else:
            reset()
            update(version + body)
            raw = digest()
        if stored != _PREFIX + raw.hex():
            return digests, (seq, EDITED)
        keep(raw)
        prev = stored
        expected += 1
    return digests, None


def parse_payload(text: str) -> Any:
    """The payload text parsed, as ``json.loads`` parses it.

    Raises:
        ValueError: it is not JSON.
    """
    return parse_plain_payload(text)[0]


def parse_plain_payload(text: str) -> tuple[Any, bool]:
    """The payload text parsed (as :func:`parse_payload`), and whether orjson wrote it.

    The flag is true when orjson, keys sorted, writes the parsed value back as the stored
    text byte for byte. Canonical JSON encodes a value's members as it encodes them alone,
    so the canonical text of any member of such a value is then orjson's text of it
    (:func:`pipetrail.hashing.canonical.member_json` may encode it).

    Raises:
        ValueError: it is not JSON.
    """
    try:
        value = orjson.loads(text)
        if orjson.dumps(value, option=_SORT) == text.encode("utf-8"):
            return value, True
    except (orjson.JSONDecodeError, orjson.JSONEncodeError, UnicodeEncodeError):
        pass  # the reference parser says what is wrong, or parses what orjson cannot
    return json.loads(text), False
