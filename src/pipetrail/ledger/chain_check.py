"""The hot path of the chain walk: an event's chain hash and payload, from its stored row.

``audit verify`` re-hashes every event and parses every payload; on a ledger of a
million events these two dominate. Both have a fast path that gives exactly what the
reference code gives, and falls back to it whenever it could differ:

* :func:`chain_hash` encodes the hashed fields with orjson directly, keys already in
  canonical (sorted) order, when every field has the type pipetrail writes (``seq`` an
  ``int``, the text fields ``str``, ``run_id`` ``str`` or None): for those, orjson's
  bytes are the canonical bytes (pipetrail.hashing.canonical). Anything else (a row
  someone edited into another type) goes through
  :func:`~pipetrail.ledger.events.event_hash`.
* :func:`parse_payload` parses with orjson and accepts the result only when writing it
  back gives the stored text byte for byte, which pipetrail's canonical payloads always
  do; otherwise (an integer beyond 64 bits orjson would turn into a float, a repeated
  key, text that is not canonical) the standard library parses it, as before.

tests/unit/ledger/test_chain_check.py checks both against the reference over generated
rows.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from blake3 import blake3

from pipetrail.hashing.canonical import CANONICAL_VERSION
from pipetrail.ledger.events import HASH_FORMAT, event_hash

__all__ = ["chain_hash", "parse_payload", "parse_plain_payload"]

_SORT = orjson.OPT_SORT_KEYS


def chain_hash(
    seq: Any, ts: Any, actor: Any, kind: Any, run_id: Any, payload: Any, prev: Any
) -> str:
    """The chain hash of one stored row's fields (as :func:`event_hash` computes it)."""
    if (
        type(seq) is int
        and type(ts) is str
        and type(actor) is str
        and type(kind) is str
        and type(payload) is str
        and type(prev) is str
        and (run_id is None or type(run_id) is str)
    ):
        try:
            body = orjson.dumps(
                {
                    "actor": actor,
                    "format": HASH_FORMAT,
                    "kind": kind,
                    "payload": payload,
                    "prev": prev,
                    "run_id": run_id,
                    "seq": seq,
                    "ts": ts,
                }
            )
        except orjson.JSONEncodeError:
            pass  # beyond orjson (a huge seq, a lone surrogate): the reference decides
        else:
            return "blake3:" + blake3(CANONICAL_VERSION + body).hexdigest()
    return event_hash(
        seq=seq, ts=ts, actor=actor, kind=kind, run_id=run_id, payload_text=payload, prev_hash=prev
    )


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
