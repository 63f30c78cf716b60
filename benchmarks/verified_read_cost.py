"""What verifying reads costs a run: per-step time with and without it, in the same run.

Every object a step consumes is hashed and compared with its digest when it is read from
the store (ADR 0011). This benchmark isolates that cost inside whole runs, in this
process, by running the same runs twice per round, once as shipped and once with the
comparison switched off, and timing each run's CPU time (``time.thread_time``: the
machine is shared, wall time is not):

* **reads**: ``_reads.py`` with N reads: N cached ``make`` steps, N ``use`` steps that
  execute (a new ``salt`` each run) and each load their input, a small stored artifact,
  from the store, and one ``total`` step: N verified reads in 2N + 1 steps;
* **cached chain**: ``_chain.py``'s chain of N trivial steps, every step a cache hit
  (the cached-chain benchmark's run, in process);
* **store reads**: ``LocalStore.get_bytes`` of 10 N stored objects, outside any run: 8 N
  small ones (200 bytes: packed) and 2 N of 64 KiB (loose files), each run through a
  new store object (so no file is trusted from an earlier run by its stat signature).
  Its "per step" figure is per read.

"Without verification" replaces, for those runs only, the digest the read path computes
(``digest_of`` as :mod:`pipetrail.store.loose_read` calls it, and as
``LocalStore._packed`` calls it in :mod:`pipetrail.store.local`; writes keep hashing)
with a value equal to any digest: the same code runs, minus hashing what was read (the
replacement looks at its caller's name, a fraction of a microsecond per call). Each
repetition (a round) runs both variants, one right after the other, which goes first
alternating from round to round; the ratio (verified CPU time / unverified CPU time) is
computed per round. The ratio rows give its median over the rounds with a
distribution-free interval (``_paired.py``), and the verdict against the target for the
two runs, verification costs at most 10% (ratio <= 1.10), only when that interval
decides it: ``inconclusive`` when it straddles 1.10, or when there are too few rounds
(the bare reads' ratio is context: what hashing adds to a read alone, no verdict). On a
shared machine single rounds range widely, and a verdict on the median alone would flip
from one run to the next.

| row | what | target |
|-----|------|--------|
| ``verified_read_cost.{reads,cached_chain}.verified`` | CPU ms per step, reads verified | context |
| ``….{reads,cached_chain}.unverified`` | CPU ms per step, reads not verified | context |
| ``….{reads,cached_chain}.ratio`` | verified / unverified CPU time, per round | <= 1.10 x |
| ``….store_reads.{verified,unverified,ratio}`` | the same for bare reads, per read | context |

Each row's text says how many reads each verified run hashed (counted in a separate
run). Rounds: 11 (``--quick``: 5).

Run: ``.venv/bin/python benchmarks/verified_read_cost.py [--quick]``.
"""

from __future__ import annotations

import random
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import _chain
import _reads
from _common import Result, log, main, summarize
from _paired import summarize_rounds

from pipetrail.store import LocalStore, local, loose_read

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

TARGET_RATIO = 1.10
_READ_MODULES = (local, loose_read)


class _AnyDigest(str):
    """A digest equal to every digest: a read that compares with it never finds damage."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return 0


_ANY = _AnyDigest("blake3:unverified")


_real_digest_of = local.digest_of


def _is_read() -> bool:
    """Whether the caller of the patched ``digest_of`` is on the read path."""
    caller = sys._getframe(2).f_code  # noqa: SLF001 - 0: here, 1: the patch, 2: its caller
    return caller.co_name == "_packed" or caller.co_filename == loose_read.__file__


def _unverified(data: Any) -> str:
    return _ANY if _is_read() else _real_digest_of(data)


@contextmanager
def _patched(replacement: Callable[[Any], str]) -> Iterator[None]:
    for module in _READ_MODULES:
        module.digest_of = replacement  # type: ignore[assignment]
    try:
        yield
    finally:
        for module in _READ_MODULES:
            module.digest_of = _real_digest_of  # type: ignore[assignment]


def _counted_reads(run: Callable[[], object]) -> int:
    """How many reads the verified read path hashes during ``run()``."""
    count = 0

    def counting(data: Any) -> str:
        nonlocal count
        count += _is_read()
        return _real_digest_of(data)

    with _patched(counting):
        run()
    return count


def _cpu(run: Callable[[], object]) -> float:
    start = time.thread_time()
    run()
    return time.thread_time() - start


class _Case:
    """One kind of run, repeated in one project: ``next_run()`` makes the next one."""

    def __init__(
        self,
        name: str,
        steps: int,
        make_run: Callable[[], Callable[[], object]],
        *,
        per: str = "step",
        checked: bool = True,
    ) -> None:
        self.name = name
        self.per = per
        self.checked = checked  # whether the 10% target applies (runs, not bare reads)
        self.steps = steps
        self.next_run = make_run
        self.cpu: dict[bool, list[float]] = {True: [], False: []}
        self.ratios: list[float] = []
        self.reads = 0

    def run_round(self, verified_first: bool) -> None:
        """Run both variants once, ``verified_first`` saying which goes first; keep the ratio."""
        times: dict[bool, float] = {}
        for verified in (verified_first, not verified_first):
            run = self.next_run()
            if verified:
                times[verified] = _cpu(run)
            else:
                with _patched(_unverified):
                    times[verified] = _cpu(run)
            self.cpu[verified].append(times[verified] / self.steps * 1e3)
        self.ratios.append(times[True] / times[False])


def _reads_case(project: Path, n: int) -> _Case:
    runner = _reads.reads.with_options(project=project)
    salt = iter(range(1, 1_000_000))
    runner.run(n=n, salt=0)  # every step executes once: the make steps are hits from now on

    def make_run() -> Callable[[], object]:
        value = next(salt)
        return lambda: runner.run(n=n, salt=value)

    return _Case("reads", 2 * n + 1, make_run)


def _chain_case(project: Path, n: int) -> _Case:
    runner = _chain.chain.with_options(project=project)
    runner.run(n=n)  # fills the cache: every later run is all hits
    return _Case("cached_chain", n, lambda: lambda: runner.run(n=n))


def _store_case(root: Path, n: int) -> _Case:
    store = LocalStore(root, fsync=False)
    rng = random.Random(9)
    digests = [store.put_bytes(rng.randbytes(200)) for _ in range(8 * n)]
    digests += [store.put_bytes(rng.randbytes(64 * 1024)) for _ in range(2 * n)]

    def read_all() -> None:
        fresh = LocalStore(root, fsync=False)  # nothing verified yet in this store object
        for digest in digests:
            fresh.get_bytes(digest)

    return _Case("store_reads", len(digests), lambda: read_all, per="read", checked=False)


def rows(cases: Sequence[_Case]) -> list[Result]:
    """The rows, from each case's rounds: CPU time per step of each variant, and the ratio."""
    results: list[Result] = []
    for case in cases:
        what = f"{case.name} ({case.reads} verified reads a run, {case.steps} {case.per}s)"
        results += [
            summarize(
                f"verified_read_cost.{case.name}.verified",
                f"CPU ms per {case.per}, {what}, reads verified",
                case.cpu[True],
                "ms",
            ),
            summarize(
                f"verified_read_cost.{case.name}.unverified",
                f"CPU ms per {case.per}, {what}, reads not verified",
                case.cpu[False],
                "ms",
            ),
            summarize_rounds(
                f"verified_read_cost.{case.name}.ratio",
                f"verified / unverified CPU time, {case.name}, per round",
                case.ratios,
                "x",
                at_most=TARGET_RATIO if case.checked else None,
            ),
        ]
    return results


def run(quick: bool) -> list[Result]:
    rounds, n = (5, 100) if quick else (11, 200)
    folder = Path(tempfile.mkdtemp(prefix="pipetrail-bench-read-cost-"))
    try:
        cases = [
            _reads_case(folder / "reads", n),
            _chain_case(folder / "chain", n),
            _store_case(folder / "store", n),
        ]
        for case in cases:
            case.reads = _counted_reads(case.next_run())
        log(
            f"verified_read_cost: {rounds} rounds of {n} reads / a {n}-step cached chain; "
            + ", ".join(f"{c.name}: {c.reads} verified reads a run" for c in cases)
        )
        for i in range(rounds):
            for case in cases:
                case.run_round(verified_first=i % 2 == 0)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    log(
        "verified_read_cost: ratios "
        + "; ".join(f"{c.name} {statistics.median(c.ratios):.3f}" for c in cases)
    )
    return rows(cases)


if __name__ == "__main__":
    sys.exit(main(run, "What verifying reads costs a run, in the same run."))
