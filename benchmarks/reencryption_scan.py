"""Which key sealed each object: its header alone against the whole object, in the same run.

``pipetrail keys rotate --reencrypt`` first learns, for every sealed object, which data
key sealed it (a rerun after a crash skips those already sealed with the new key;
docs/adr/0025-reencryption.md). The key's id is in the object's header. This script
stores sealed objects in a ``LocalStore`` (under benchmarks/.work/) and times, on a new
store each time (nothing known verified), the two ways of reading the id of every one:

* ``open``: a verified open (the whole object hashed first), then its first 64 bytes;
* ``peek``: the first 64 bytes alone (``LocalStore.peek``, not verified: the header is
  bound into every chunk's authentication, so a changed one fails every later read).

The objects: many small ones (16 KiB to 1 MiB, as sealed tables and logs are) and a
few of 32 MiB. Wall and CPU time (every thread of the process) per pass are reported,
alternating which way goes first; the speed-up is the median of per-repetition ratios.

Run: ``.venv/bin/python benchmarks/reencryption_scan.py [--quick]``.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import WORK_DIR, Result, log, main, summarize

from pipetrail.store import LocalStore
from pipetrail.store.sealed import SealedStore, SealingKeys, header_key_id

HEADER = 64


def _by_open(store: LocalStore, blob: str) -> str | None:
    with store.open(blob) as raw:
        return header_key_id(raw.read(HEADER))


def _by_peek(store: LocalStore, blob: str) -> str | None:
    return header_key_id(store.peek(blob, HEADER))


def _pass(root: Path, blobs: list[str], way: object, expected: str) -> tuple[float, float]:
    store = LocalStore(root, fsync=False)
    wall, cpu = time.perf_counter(), time.process_time()
    for blob in blobs:
        if way(store, blob) != expected:  # type: ignore[operator]
            raise RuntimeError(f"{blob}: not sealed with the expected key")
    return time.perf_counter() - wall, time.process_time() - cpu


def run(quick: bool) -> list[Result]:
    small, large, reps = (400, 2, 3) if quick else (2000, 8, 5)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="reencryption-scan-", dir=WORK_DIR))
    keys = SealingKeys.single(os.urandom(32))
    rng = random.Random(7)
    try:
        sealed = SealedStore(LocalStore(folder / "objects", fsync=False), keys)
        sizes = [rng.randint(16 << 10, 1 << 20) for _ in range(small)] + [32 << 20] * large
        blobs = [sealed.put_bytes(os.urandom(size)) for size in sizes]
        total = sum(sizes) / 2**20
        log(f"reencryption scan: {len(blobs)} sealed objects, {total:.0f} MiB, {reps} reps")
        seconds: dict[str, list[float]] = {"open": [], "peek": []}
        cpu: dict[str, list[float]] = {"open": [], "peek": []}
        ratios: list[float] = []
        cpu_ratios: list[float] = []
        ways = {"open": _by_open, "peek": _by_peek}
        for rep in range(reps):
            order = ["open", "peek"] if rep % 2 == 0 else ["peek", "open"]
            for name in order:
                wall, used = _pass(folder / "objects", blobs, ways[name], keys.current)
                seconds[name].append(wall)
                cpu[name].append(used)
            ratios.append(seconds["open"][-1] / seconds["peek"][-1])
            cpu_ratios.append(cpu["open"][-1] / max(cpu["peek"][-1], 1e-6))
            log(
                f"  rep {rep + 1}: open {seconds['open'][-1]:.3f} s ({cpu['open'][-1]:.3f} s "
                f"CPU), peek {seconds['peek'][-1]:.3f} s ({cpu['peek'][-1]:.3f} s CPU)"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    what = f"{len(blobs)} sealed objects, {total:.0f} MiB"
    return [
        summarize("reencryption_scan.open", f"{what}, verified open", seconds["open"], "s"),
        summarize("reencryption_scan.peek", f"{what}, header only", seconds["peek"], "s"),
        summarize("reencryption_scan.open_cpu", "verified open, CPU", cpu["open"], "s"),
        summarize("reencryption_scan.peek_cpu", "header only, CPU", cpu["peek"], "s"),
        summarize("reencryption_scan.speedup", "open / peek wall time", ratios, "x"),
        summarize("reencryption_scan.cpu_speedup", "open / peek CPU time", cpu_ratios, "x"),
    ]


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0]))
