"""Encrypted (sealed) writes and reads of a LocalStore against plain ones, in the same run.

Content labelled sensitive is sealed before it reaches the store (AES-256-GCM in 1 MiB
chunks; docs/adr/0023-keyed-digests.md). The target: sealed write and read throughput
at least 50% of the plain store's, measured side by side.

Each repetition writes 1 GiB (``--quick``: 256 MiB) of fresh random bytes, as objects of
64 MiB, through a plain ``LocalStore`` and through a ``SealedStore`` over another
``LocalStore`` (both ``fsync=False``, under benchmarks/.work/), alternating which goes
first; then reads every object back whole (``get_bytes``: the plain store verifies the
digest; the sealed one decrypts and authenticates every chunk while another thread
verifies the ciphertext's digest, and returns nothing until both pass). Only the store
calls are timed (making the random bytes is not). The ratios (sealed rate / plain rate)
are computed per repetition from the two timings made next to each other; the targets
are checked on their medians. The CPU time of each (every thread of the process,
``time.process_time``) is reported beside, as ratios (information: a loaded machine
stretches wall time, not the work done).

Run: ``.venv/bin/python benchmarks/encryption.py [--quick]``.
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import WORK_DIR, Result, log, main, summarize

from pipetrail.store import LocalStore
from pipetrail.store.sealed import SealedStore, SealingKeys

OBJECT_SIZE = 64 * 1024 * 1024
TARGET_PERCENT = 50.0


def _write(put: object, objects: int) -> tuple[float, float, list[str]]:
    seconds = cpu = 0.0
    digests = []
    for _ in range(objects):
        data = os.urandom(OBJECT_SIZE)
        start, used = time.perf_counter(), time.process_time()
        digests.append(put(data))  # type: ignore[operator]
        seconds += time.perf_counter() - start
        cpu += time.process_time() - used
    return seconds, cpu, digests


def _read(get: object, digests: list[str]) -> tuple[float, float]:
    start, used = time.perf_counter(), time.process_time()
    for digest in digests:
        if len(get(digest)) != OBJECT_SIZE:  # type: ignore[operator]
            raise RuntimeError(f"short read of {digest}")
    return time.perf_counter() - start, time.process_time() - used


def run(quick: bool) -> list[Result]:
    reps = 3 if quick else 7
    objects = 4 if quick else 16
    gib = objects * OBJECT_SIZE / 2**30
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    keys = SealingKeys.single(os.urandom(32))
    log(f"encryption: {objects} objects of {OBJECT_SIZE >> 20} MiB per repetition, {reps} reps")
    rates: dict[str, list[float]] = {
        "plain_write": [],
        "sealed_write": [],
        "plain_read": [],
        "sealed_read": [],
    }
    write_ratios: list[float] = []
    read_ratios: list[float] = []
    cpu_ratios: dict[str, list[float]] = {"write": [], "read": []}
    for rep in range(reps):
        folder = Path(tempfile.mkdtemp(prefix="encryption-", dir=WORK_DIR))
        try:
            plain = LocalStore(folder / "plain", fsync=False)
            sealed = SealedStore(LocalStore(folder / "sealed", fsync=False), keys)
            seconds: dict[str, float] = {}
            cpu: dict[str, float] = {}
            written: dict[str, list[str]] = {}
            order = ["plain", "sealed"] if rep % 2 == 0 else ["sealed", "plain"]
            for name in order:
                store = plain if name == "plain" else sealed
                seconds[f"{name}_write"], cpu[f"{name}_write"], written[name] = _write(
                    store.put_bytes, objects
                )
            for name in order:
                reader = (
                    LocalStore(folder / "plain", fsync=False)
                    if name == "plain"
                    else SealedStore(LocalStore(folder / "sealed", fsync=False), keys)
                )
                seconds[f"{name}_read"], cpu[f"{name}_read"] = _read(
                    reader.get_bytes, written[name]
                )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        for name, value in seconds.items():
            rates[name].append(gib / value)
        write_ratios.append(100.0 * seconds["plain_write"] / seconds["sealed_write"])
        read_ratios.append(100.0 * seconds["plain_read"] / seconds["sealed_read"])
        for kind in ("write", "read"):
            cpu_ratios[kind].append(100.0 * cpu[f"plain_{kind}"] / cpu[f"sealed_{kind}"])
        log(
            f"  rep {rep + 1}: write {gib / seconds['plain_write']:.2f} vs "
            f"{gib / seconds['sealed_write']:.2f} GiB/s ({write_ratios[-1]:.0f}%), read "
            f"{gib / seconds['plain_read']:.2f} vs {gib / seconds['sealed_read']:.2f} GiB/s "
            f"({read_ratios[-1]:.0f}%); CPU time ratios: write {cpu_ratios['write'][-1]:.0f}%, "
            f"read {cpu_ratios['read'][-1]:.0f}%"
        )
    log(
        f"encryption: median write ratio {statistics.median(write_ratios):.0f}%, "
        f"read ratio {statistics.median(read_ratios):.0f}%"
    )
    size = f"{gib:g} GiB"
    return [
        summarize(
            "encryption.plain_write", f"{size}, LocalStore.put_bytes", rates["plain_write"], "GiB/s"
        ),
        summarize(
            "encryption.sealed_write",
            f"{size}, SealedStore.put_bytes",
            rates["sealed_write"],
            "GiB/s",
        ),
        summarize(
            "encryption.write_ratio",
            "sealed / plain write rate",
            write_ratios,
            "%",
            at_least=TARGET_PERCENT,
        ),
        summarize(
            "encryption.plain_read", f"{size}, LocalStore.get_bytes", rates["plain_read"], "GiB/s"
        ),
        summarize(
            "encryption.sealed_read",
            f"{size}, SealedStore.get_bytes",
            rates["sealed_read"],
            "GiB/s",
        ),
        summarize(
            "encryption.read_ratio",
            "sealed / plain read rate",
            read_ratios,
            "%",
            at_least=TARGET_PERCENT,
        ),
        summarize(
            "encryption.write_cpu_ratio",
            "plain / sealed CPU time (all threads), write",
            cpu_ratios["write"],
            "%",
        ),
        summarize(
            "encryption.read_cpu_ratio",
            "plain / sealed CPU time (all threads), read",
            cpu_ratios["read"],
            "%",
        ),
    ]


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0]))
