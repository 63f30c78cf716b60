"""Encrypted (sealed) writes and reads of a LocalStore against plain ones, in the same run.

Content labelled sensitive is sealed before it reaches the store (AES-256-GCM in 1 MiB
chunks; docs/adr/0023-keyed-digests.md). The target: sealed write and read throughput
at least 50% of the plain store's, measured side by side.

The method. A 64 MiB write's time is mostly the kernel's: pages for the buffers and the
page cache, which on a machine whose memory other processes churn can cost ten times
more from one call to the next (reclaim, compaction). So the two stores are compared
object by object: each round writes 1 GiB (``--quick``: 256 MiB) of fresh random bytes
as objects of 64 MiB, each object through a plain ``LocalStore`` and through a
``SealedStore`` over another ``LocalStore`` (both ``fsync=False``, under
benchmarks/.work/) one right after the other, which goes first alternating from object
to object; then reads every object back whole the same way (``get_bytes``, a new store
object: the plain store verifies the digest; the sealed one decrypts and authenticates
every chunk while another thread verifies the ciphertext's digest, and returns nothing
until both pass). Only the store calls are timed (making the random bytes is not).

A round's ratio is sealed rate / plain rate over its objects. The ratio rows give the
median over the rounds with a distribution-free interval (``_paired.py``); the verdict
against the target is given only when that interval decides it (``inconclusive``
otherwise). The CPU time of each side (every thread of the process, user and system, from
``getrusage``) is reported beside as ratios, without verdicts: the user-time ratio is the
work of the code itself (hashing, encryption, copies), the system time is where the
machine's memory state shows.

Rounds: 9, each of 16 objects (``--quick``: 5 of 4).

Run: ``.venv/bin/python benchmarks/encryption.py [--quick]``.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, cast

from _common import WORK_DIR, Result, log, main, not_measured, summarize
from _paired import summarize_rounds

from pipetrail.store import LocalStore
from pipetrail.store.sealed import SealedStore, SealingKeys

if TYPE_CHECKING:
    from collections.abc import Callable

OBJECT_SIZE = 64 * 1024 * 1024
TARGET_PERCENT = 50.0
ROUNDS, OBJECTS = 9, 16
QUICK_ROUNDS, QUICK_OBJECTS = 5, 4
SIDES = ("plain", "sealed")


@dataclass
class Tally:
    """What one side spent in one round: wall, user and system seconds."""

    wall: float = 0.0
    user: float = 0.0
    system: float = 0.0


def _timed(tally: Tally, call: Callable[[], object]) -> object:
    start, used = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    result = call()
    done = resource.getrusage(resource.RUSAGE_SELF)
    tally.wall += time.perf_counter() - start
    tally.user += done.ru_utime - used.ru_utime
    tally.system += done.ru_stime - used.ru_stime
    return result


def _round(folder: Path, keys: SealingKeys, objects: int, first: int) -> dict[str, Tally]:
    """One round: every object written by both stores, then read back by both, interleaved.

    Returns:
        Per ``plain_write``, ``sealed_write``, ``plain_read``, ``sealed_read``: the time spent.
    """
    tallies = {f"{side}_{kind}": Tally() for side in SIDES for kind in ("write", "read")}
    stores: dict[str, LocalStore | SealedStore] = {
        "plain": LocalStore(folder / "plain", fsync=False),
        "sealed": SealedStore(LocalStore(folder / "sealed", fsync=False), keys),
    }
    written: dict[str, list[str]] = {side: [] for side in SIDES}
    for i in range(objects):
        data = os.urandom(OBJECT_SIZE)
        for side in SIDES if (first + i) % 2 == 0 else SIDES[::-1]:
            digest = _timed(tallies[f"{side}_write"], partial(stores[side].put_bytes, data))
            written[side].append(str(digest))
        del data
    readers: dict[str, LocalStore | SealedStore] = {
        "plain": LocalStore(folder / "plain", fsync=False),
        "sealed": SealedStore(LocalStore(folder / "sealed", fsync=False), keys),
    }
    for i in range(objects):
        for side in SIDES if (first + i) % 2 == 0 else SIDES[::-1]:
            got = _timed(
                tallies[f"{side}_read"], partial(readers[side].get_bytes, written[side][i])
            )
            if len(cast("bytes", got)) != OBJECT_SIZE:
                raise RuntimeError(f"short {side} read of {written[side][i]}")
            del got
    return tallies


def ratio_rows(tallies: list[dict[str, Tally]], gib: float) -> list[Result]:
    """The rows, from each round's tallies (``gib`` written and read per side per round)."""
    rows: list[Result] = []
    for kind, call in (("write", "put_bytes"), ("read", "get_bytes")):
        for side in SIDES:
            store = "LocalStore" if side == "plain" else "SealedStore"
            rows.append(
                summarize(
                    f"encryption.{side}_{kind}",
                    f"{gib:g} GiB, {store}.{call}",
                    [gib / t[f"{side}_{kind}"].wall for t in tallies],
                    "GiB/s",
                )
            )
        plain, sealed = f"plain_{kind}", f"sealed_{kind}"
        rows.append(
            summarize_rounds(
                f"encryption.{kind}_ratio",
                f"sealed / plain {kind} rate, per round",
                [100.0 * t[plain].wall / t[sealed].wall for t in tallies],
                "%",
                at_least=TARGET_PERCENT,
            )
        )
    for kind in ("write", "read"):
        plain, sealed = f"plain_{kind}", f"sealed_{kind}"
        rows.append(
            _cpu_row(
                f"encryption.{kind}_cpu_ratio",
                f"plain / sealed CPU time (all threads, user + system), {kind}",
                [
                    (t[plain].user + t[plain].system, t[sealed].user + t[sealed].system)
                    for t in tallies
                ],
            )
        )
        rows.append(
            _cpu_row(
                f"encryption.{kind}_user_cpu_ratio",
                f"plain / sealed user CPU time (all threads), {kind}: the code's own work",
                [(t[plain].user, t[sealed].user) for t in tallies],
            )
        )
    return rows


def _cpu_row(name: str, measured: str, pairs: list[tuple[float, float]]) -> Result:
    """plain / sealed CPU time, %, over the rounds whose sealed side took measurable time."""
    ratios = [100.0 * plain / sealed for plain, sealed in pairs if sealed > 0]
    if not ratios:
        return not_measured(name, measured, "%", "CPU time too small to measure")
    return summarize(name, measured, ratios, "%")


def run(quick: bool) -> list[Result]:
    rounds, objects = (QUICK_ROUNDS, QUICK_OBJECTS) if quick else (ROUNDS, OBJECTS)
    gib = objects * OBJECT_SIZE / 2**30
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    keys = SealingKeys.single(os.urandom(32))
    log(f"encryption: {rounds} rounds of {objects} objects of {OBJECT_SIZE >> 20} MiB, interleaved")
    tallies: list[dict[str, Tally]] = []
    for r in range(rounds):
        folder = Path(tempfile.mkdtemp(prefix="encryption-", dir=WORK_DIR))
        try:
            tallies.append(_round(folder, keys, objects, r))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        t = tallies[-1]
        log(
            f"  round {r + 1}: "
            + "; ".join(
                f"{kind} {gib / t[f'plain_{kind}'].wall:.2f} vs "
                f"{gib / t[f'sealed_{kind}'].wall:.2f} GiB/s "
                f"({100 * t[f'plain_{kind}'].wall / t[f'sealed_{kind}'].wall:.0f}%), CPU s "
                f"user {t[f'plain_{kind}'].user:.2f} vs {t[f'sealed_{kind}'].user:.2f}, "
                f"system {t[f'plain_{kind}'].system:.2f} vs {t[f'sealed_{kind}'].system:.2f}"
                for kind in ("write", "read")
            )
        )
    return ratio_rows(tallies, gib)


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0]))
