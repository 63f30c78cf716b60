"""Run every benchmark and print one table.

Run: ``.venv/bin/python benchmarks/run_all.py`` (about 2-3 minutes) or with ``--quick``
(fewer repetitions, under a minute once the hashing file set exists). ``--only NAME``
runs some of them (``step_overhead``, ``cached_chain``, ``hashing``, ``cli_startup``,
``metrics``, ``lineage``, ``sources``, ``data_ops``, ``contracts``, ``verified_reads``; the lineage
benchmark builds a 1.2 GB synthetic ledger once, about 75 s, and reuses it);
``--wait-quiet SECONDS`` waits (up to SECONDS) before each benchmark until other processes
leave the CPUs alone. The line under the table says how busy other processes kept the
CPUs during each benchmark: on a shared machine, read the results with it.

Exit status: 0 if every target is met, 1 if any is missed, 2 if a benchmark crashed.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

import cached_chain
import cli_startup
import contracts
import data_ops
import hashing
import lineage
import metrics
import reproduce
import sources
import step_overhead
import verified_reads
from _common import (
    BackgroundLoad,
    Result,
    background_line,
    format_table,
    log,
    machine_line,
    settle,
    wait_for_quiet,
)

BENCHMARKS = {
    "step_overhead": step_overhead.run,
    "cached_chain": cached_chain.run,
    "hashing": lambda quick: hashing.run(quick, parallel=True),
    "cli_startup": cli_startup.run,
    "metrics": metrics.run,
    "lineage": lineage.run,
    "sources": sources.run,
    "contracts": contracts.run,
    "data_ops": data_ops.run,
    "reproduce": reproduce.run,
    "verified_reads": verified_reads.run,
}


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the pipetrail benchmark suite.")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument(
        "--only", action="append", choices=sorted(BENCHMARKS), help="run only these"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each benchmark, wait up to SECONDS for other processes to go idle",
    )
    args = parser.parse_args()
    names = args.only or list(BENCHMARKS)
    results: list[Result] = []
    crashed: list[str] = []
    loads: dict[str, float | None] = {}
    start = time.perf_counter()
    for name in names:
        settle()
        if args.wait_quiet > 0:
            wait_for_quiet(args.wait_quiet)
        began = time.perf_counter()
        try:
            with BackgroundLoad() as load:
                results.extend(BENCHMARKS[name](args.quick))
        except Exception:  # noqa: BLE001 - report and go on with the other benchmarks
            crashed.append(name)
            log(f"{name} crashed:\n{traceback.format_exc()}")
        loads[name] = load.cpus
        log(f"{name}: {time.perf_counter() - began:.1f} s")
    mode = "quick" if args.quick else "full"
    print(f"pipetrail benchmarks ({mode}); {machine_line()}")
    print(format_table(results))
    print(background_line(loads))
    failed = [r.name for r in results if r.passed is False]
    passed = sum(1 for r in results if r.passed)
    print(
        f"\n{passed} targets met, {len(failed)} missed"
        + (f" ({', '.join(failed)})" if failed else "")
        + (f"; crashed: {', '.join(crashed)}" if crashed else "")
        + f"; total {time.perf_counter() - start:.0f} s"
    )
    if crashed:
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
