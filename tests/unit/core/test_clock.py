"""UTC time and time-ordered ids."""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from collections import deque
from typing import TYPE_CHECKING

from pipetrail.core import clock
from pipetrail.core.clock import format_ts, new_id, now_ts, utcnow

if TYPE_CHECKING:
    from collections.abc import Callable

    import pytest

_CROCKFORD_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def _random_bytes(monkeypatch: pytest.MonkeyPatch, urandom: Callable[[int], bytes]) -> None:
    """Make ``urandom`` the source of the random bits of the ids taken next.

    Ids take their random bits from numbers drawn ahead: those already drawn are dropped.
    """
    monkeypatch.setattr(os, "urandom", urandom)
    monkeypatch.setattr(clock, "_RANDOM", deque())


def test_new_id_is_26_crockford_characters() -> None:
    for _ in range(200):
        value = new_id()
        assert len(value) == 26
        assert _CROCKFORD_ID.fullmatch(value), value
        # Crockford base32 leaves out I, L, O and U.
        assert not set(value) & set("ILOU")


def test_new_id_prefix_is_prepended() -> None:
    value = new_id("run_")
    assert value.startswith("run_")
    assert _CROCKFORD_ID.fullmatch(value.removeprefix("run_"))


def test_new_ids_are_unique() -> None:
    ids = [new_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)


def test_ids_created_later_sort_later() -> None:
    earlier = [new_id() for _ in range(5)]
    time.sleep(0.002)
    later = [new_id() for _ in range(5)]
    assert max(earlier) < min(later)


def test_id_encodes_milliseconds_in_its_first_ten_characters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    millis = 1_700_000_000_123
    monkeypatch.setattr(time, "time_ns", lambda: millis * 1_000_000 + 999_999)
    _random_bytes(monkeypatch, lambda n: b"\x00" * n)
    value = new_id()
    assert value == _encode(millis << 80)
    # 48 bits of time fill the first ten characters (50 bits, top two zero) ...
    assert int(_decode(value[:10])) == millis
    # ... and with zero randomness the remaining 16 characters are all zeros.
    assert value[10:] == "0" * 16


def test_random_part_fills_the_last_sixteen_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time_ns", lambda: 0)
    _random_bytes(monkeypatch, lambda n: b"\xff" * n)
    assert new_id() == "0" * 10 + "Z" * 16


def test_utcnow_is_timezone_aware_utc() -> None:
    now = utcnow()
    assert now.tzinfo is not None
    assert now.utcoffset() == dt.timedelta(0)
    assert abs(now.timestamp() - time.time()) < 5


def test_format_ts_ends_with_z_and_keeps_microseconds() -> None:
    moment = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
    assert format_ts(moment) == "2024-05-06T07:08:09.123456Z"
    assert format_ts(utcnow()).endswith("Z")


def test_format_ts_converts_other_timezones_to_utc() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    moment = dt.datetime(2024, 1, 1, 1, 0, 0, tzinfo=plus_two)
    assert format_ts(moment) == "2023-12-31T23:00:00.000000Z"


def test_format_ts_sorts_like_time() -> None:
    first = dt.datetime(2024, 1, 1, 9, 59, 59, 999999, tzinfo=dt.UTC)
    second = first + dt.timedelta(microseconds=1)
    assert format_ts(first) < format_ts(second)


_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _encode(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def _decode(text: str) -> int:
    value = 0
    for char in text:
        value = value * 32 + _ALPHABET.index(char)
    return value


def test_format_ts_writes_what_strftime_writes() -> None:
    plus_five = dt.timezone(dt.timedelta(hours=5, minutes=30))
    moments = [
        dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
        dt.datetime(9999, 12, 31, 18, 0, 0, 1, tzinfo=dt.UTC),
        dt.datetime(2024, 1, 1, 3, 0, 0, 5, tzinfo=plus_five),
        dt.datetime(999, 3, 4, 5, 6, 7, 8, tzinfo=dt.UTC),
        dt.datetime(1, 1, 1, 12, 0, 0, tzinfo=dt.UTC),
    ]
    for moment in moments:
        expected = moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert format_ts(moment) == expected, moment


def test_new_id_matches_the_five_bit_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    for millis, noise in [(1_733_000_000_000, b"\x01\x23\x45\x67\x89\xab\xcd\xef\x10\x32"),
                          ((1 << 48) - 1, b"\x80" + b"\x00" * 9)]:  # fmt: skip
        monkeypatch.setattr(time, "time_ns", lambda m=millis: m * 1_000_000)
        _random_bytes(monkeypatch, lambda n, b=noise: b[:n])
        assert new_id() == _encode(millis << 80 | int.from_bytes(noise, "big"))


def test_now_ts_writes_what_format_ts_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    for nanos in [
        1_733_000_000_123_456_789,
        1_733_000_000_999_999_999,
        1_733_000_001_000_000_000,  # the next second: its text is written anew
        1_733_000_001_000_000_999,
        951_782_399_000_001_000,  # 2000-02-28T23:59:59, then a leap day
        951_782_400_000_000_000,
        0,
    ]:
        monkeypatch.setattr(time, "time_ns", lambda n=nanos: n)
        seconds, rest = divmod(nanos, 1_000_000_000)
        moment = dt.datetime.fromtimestamp(seconds, dt.UTC) + dt.timedelta(
            microseconds=rest // 1000
        )
        assert now_ts() == format_ts(moment), nanos


def test_now_ts_is_now() -> None:
    before = format_ts(utcnow())
    value = now_ts()
    after = format_ts(utcnow())
    assert before <= value <= after


def test_random_bits_are_read_ahead_for_many_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []

    def urandom(n: int) -> bytes:
        reads.append(n)
        return bytes(range(256)) * (n // 256) + bytes(n % 256)

    _random_bytes(monkeypatch, urandom)
    ids = [new_id() for _ in range(clock._RANDOM_BATCH + 1)]
    assert reads == [10 * clock._RANDOM_BATCH] * 2  # one read per batch of ids
    # Each id takes its own ten bytes, in the order read.
    first, second = (int.from_bytes(bytes(range(i, i + 10)), "big") for i in (0, 10))
    assert ids[0] == _encode(int(_decode(ids[0][:10])) << 80 | first)
    assert ids[1] == _encode(int(_decode(ids[1][:10])) << 80 | second)


def test_a_forked_child_does_not_take_its_parents_random_bits() -> None:
    new_id()  # the parent has random bits drawn ahead
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child process
        try:
            os.write(write, new_id()[10:].encode())
        finally:
            os._exit(0)
    os.close(write)
    theirs = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(child, 0)
    assert len(theirs) == 16
    assert new_id()[10:] != theirs  # the parent's next bits are not the child's
