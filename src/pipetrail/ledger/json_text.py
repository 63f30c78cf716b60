"""The ledger's JSON texts read as ``json.loads`` reads them, through orjson where it can.

The projections' JSON columns and the events' payloads are read here (by the
:class:`~pipetrail.ledger.queries.Reader` and by :mod:`pipetrail.ledger.trusted`).
"""

from __future__ import annotations

import bisect
import itertools
import json
from typing import Any

import orjson

__all__ = ["parse_json", "parse_json_all", "read_json"]

# An integer orjson would read as a float (it reads integers in [-2**63, 2**64) exactly)
# has twenty digits or more, or nineteen after a minus sign. The text is mapped to "0" for
# each ASCII digit and "x" for anything else, so that such runs are found by a substring
# search; a run inside a string only sends the text to the standard library's parser.
_DIGITS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x78 for b in range(256))
_RUN_OF_19 = b"0" * 19
_RUN_OF_20 = b"0" * 20
_NEGATIVE_RUN_OF_19 = b"x" + _RUN_OF_19  # "-" maps to "x" as well: checked below


def parse_json(text: str) -> Any:
    """Parse JSON text as ``json.loads`` does, through orjson where it reads the same.

    orjson reads the values of the ledger's JSON (strings, integers, floats, objects,
    arrays) as the standard library does, several times faster, except integers beyond
    64 bits (it reads them as floats, losing digits) and what it refuses (``NaN``, lone
    surrogates, numbers beyond the double range), which the standard library reads.

    Raises:
        ValueError: the text is not JSON.
    """
    return read_json(text)[0]


def read_json(text: str) -> tuple[Any, bool]:
    """:func:`parse_json`, and whether orjson read the text (then every float is finite)."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        return json.loads(text), False  # a lone surrogate: only the standard library reads it
    mapped = data.translate(_DIGITS)
    if _RUN_OF_19 not in mapped or (_RUN_OF_20 not in mapped and not _negative_run(data, mapped)):
        try:
            return orjson.loads(data), True
        except orjson.JSONDecodeError:
            pass  # the standard library accepts more, or says what is wrong
    return json.loads(text), False


def parse_json_all(texts: list[str]) -> list[Any]:
    """:func:`parse_json` of each of ``texts``, with one check of them all for orjson.

    :func:`parse_json` lets orjson read a text unless it holds nineteen ASCII digits in a
    row (an integer orjson might read otherwise than ``json.loads``, beyond 64 bits) or
    cannot be encoded; what orjson refuses goes to ``json.loads``. Here the digits are
    looked for once in all the texts joined by line breaks (no run spans two texts),
    instead of once per text: the texts holding such a run, and every text when one is
    not ASCII, go through :func:`parse_json`; orjson reads the others, and a text it
    refuses goes through :func:`parse_json` too. Each value is what :func:`parse_json`
    gives for its text.
    """
    joined = "\n".join(texts)
    if not joined.isascii():
        return [parse_json(text) for text in texts]
    mapped = joined.encode("ascii").translate(_DIGITS)
    slow: set[int] = set()
    at = mapped.find(_RUN_OF_19)
    if at >= 0:
        ends = list(itertools.accumulate(len(text) + 1 for text in texts))
        while at >= 0:
            index = bisect.bisect_right(ends, at)
            slow.add(index)
            at = mapped.find(_RUN_OF_19, ends[index])
    loads = orjson.loads
    if not slow:
        try:
            return [loads(text) for text in texts]
        except orjson.JSONDecodeError:
            pass  # one of them is refused: each is read as below
    values: list[Any] = []
    for index, text in enumerate(texts):
        if index in slow:
            values.append(parse_json(text))
            continue
        try:
            values.append(loads(text))
        except orjson.JSONDecodeError:
            values.append(parse_json(text))
    return values


def _negative_run(data: bytes, mapped: bytes) -> bool:
    """Whether ``data`` has a minus sign followed by nineteen digits."""
    at = mapped.find(_NEGATIVE_RUN_OF_19)
    while at >= 0:
        if data[at] == 0x2D:  # "-"
            return True
        at = mapped.find(_NEGATIVE_RUN_OF_19, at + 1)
    return False
