"""UTC time and time-ordered ids; the only place pipetrail reads the wall clock."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections import deque

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


# Random 80-bit numbers drawn ahead from the operating system, one read for
# _RANDOM_BATCH ids (a read costs a system call: a run takes an id for every step).
# A deque, whose popleft and extend are atomic: threads never take the same number.
# A forked child empties it before anything runs there, so that it never takes a
# number its parent has left (it draws its own).
_RANDOM: deque[int] = deque()
_RANDOM_BATCH = 256


def _drawn() -> int:
    """80 random bits, once _RANDOM is found empty: it is filled again first."""
    while True:
        data = os.urandom(10 * _RANDOM_BATCH)
        _RANDOM.extend(int.from_bytes(data[at : at + 10], "big") for at in range(0, len(data), 10))
        try:
            return _RANDOM.popleft()
        except IndexError:  # other threads took them all meanwhile
            continue


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_RANDOM.clear)


def new_id(prefix: str = "") -> str:
    """Return a new time-ordered id: 48-bit milliseconds + 80 random bits, Crockford base32.

    Ids created later sort after earlier ones (to the millisecond), so listings ordered by
    id are ordered by creation time. ``prefix`` is prepended as is (``run_``). The random
    bits are read from the operating system ahead, for many ids at once (see _RANDOM).
    """
    try:
        noise = _RANDOM.popleft()
    except IndexError:
        noise = _drawn()
    value = (time.time_ns() // 1_000_000) << 80 | noise
    # 26 characters of 5 bits, written two at a time (10 bits), most significant first;
    # the 13 shifts, masks and look-ups are made by map in C (every step run takes an id).
    pairs = map(
        _CROCKFORD_PAIRS.__getitem__, map((1023).__and__, map(value.__rshift__, _PAIR_SHIFTS))
    )
    return prefix + "".join(pairs)
