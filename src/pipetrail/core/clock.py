"""UTC time and time-ordered ids; the only place pipetrail reads the wall clock."""

from __future__ import annotations

import datetime as dt
import os
import time

__all__ = ["format_ts", "new_id", "now_ts", "utcnow"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_PAIRS = tuple(high + low for high in _CROCKFORD for low in _CROCKFORD)
_PAIR_SHIFTS = tuple(range(120, -1, -10))


def utcnow() -> dt.datetime:
    """Return the current time, timezone-aware in UTC."""
    return dt.datetime.now(dt.UTC)


def format_ts(moment: dt.datetime) -> str:
    """Return an ISO-8601 UTC timestamp with microseconds and a ``Z`` suffix."""
    if moment.tzinfo is not dt.UTC:
        moment = moment.astimezone(dt.UTC)
    if moment.year < 1000:  # strftime writes such a year without leading zeros
        return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    # The same text as strftime gives, several times faster: ``+00:00`` becomes ``Z``.
    return moment.isoformat(timespec="microseconds")[:-6] + "Z"


# The text of the current second (what format_ts writes before the fraction), and the
# second it is for: the timestamps of one second share it.
_SECOND: list[tuple[int, str]] = [(-1, "")]


def now_ts() -> str:
    """Return ``format_ts(utcnow())``: the current time as an ISO-8601 UTC timestamp.

    The same text, several times cheaper (runs take a timestamp for every step): the
    date and time of day are written once a second, the microseconds for each call.
    """
    seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
    second, text = _SECOND[0]
    if second != seconds:
        text = format_ts(dt.datetime.fromtimestamp(seconds, dt.UTC))[:-8]
        _SECOND[0] = (seconds, text)  # one tuple: threads never see a mixed pair
    return f"{text}.{nanos // 1000:06d}Z"


def new_id(prefix: str = "") -> str:
    """Return a new time-ordered id: 48-bit milliseconds + 80 random bits, Crockford base32.

    Ids created later sort after earlier ones (to the millisecond), so listings ordered by
    id are ordered by creation time. ``prefix`` is prepended as is (``run_``).
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    # 26 characters of 5 bits, written two at a time (10 bits), most significant first;
    # the 13 shifts, masks and look-ups are made by map in C (every step run takes an id).
    pairs = map(
        _CROCKFORD_PAIRS.__getitem__, map((1023).__and__, map(value.__rshift__, _PAIR_SHIFTS))
    )
    return prefix + "".join(pairs)
