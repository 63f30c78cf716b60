"""UTC time and time-ordered ids; the only place pipetrail reads the wall clock."""

from __future__ import annotations

import datetime as dt
import os
import time

__all__ = ["format_ts", "new_id", "utcnow"]

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def utcnow() -> dt.datetime:
    """Return the current time, timezone-aware in UTC."""
    return dt.datetime.now(dt.UTC)


def format_ts(moment: dt.datetime) -> str:
    """Return an ISO-8601 UTC timestamp with microseconds and a ``Z`` suffix."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id(prefix: str = "") -> str:
    """Return a new time-ordered id: 48-bit milliseconds + 80 random bits, Crockford base32.

    Ids created later sort after earlier ones (to the millisecond), so listings ordered by
    id are ordered by creation time. ``prefix`` is prepended as is (``run_``).
    """
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return prefix + "".join(reversed(chars))
