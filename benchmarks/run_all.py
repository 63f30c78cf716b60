"""Run every benchmark and print one table; ``--write-readme`` also puts it in README.md.

Run: ``.venv/bin/python benchmarks/run_all.py`` or with ``--quick`` (fewer repetitions,
a few smaller data sets). By estimate (repetition counts and fixture sizes, not a
measurement): a full run about half an hour on a quiet 2-CPU machine, a quick one about
10 minutes, once the fixtures are built. ``--only NAME`` runs some of them (the keys of
``BENCHMARKS`` below; an unknown name lists them). The first run also builds the
fixtures under benchmarks/.work/ and installs the peers (DVC, Kedro, MLflow, s3fs) into
private virtualenvs there: the lineage benchmark's 1.2 GB synthetic ledger takes about
75 s; gc, merkle, governance and audit_bundle a few minutes each (benchmarks/README.md
lists them).
``--wait-quiet SECONDS`` waits (up to SECONDS) before each benchmark until other
processes leave the CPUs alone. The benchmarks share this process: after each one, the
environment variables and the current directory are put back as they were before it,
so what one benchmark sets is never seen by the next. Above the table: the commit
measured (and what differed from it), the machine and the load average before and after
the run; under it, how busy other processes kept the CPUs during each benchmark: on a
shared machine, read the results with it.

``--write-readme`` runs every benchmark (no ``--only``) and replaces the results section
of ``benchmarks/README.md`` (between its ``BEGIN RESULTS`` and ``END RESULTS`` markers)
with this run's: the README's figures always come from one run at one commit.

Exit status: 0 if every target is met, 1 if any is missed or could not be measured (a
peer that could not be installed), 2 if a benchmark crashed.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback

import audit_bundle
import cached_chain
import cli_startup
import contracts
import dask_overhead
import data_ops
import encryption
import example_rerun
import gc_dry_run
import governance
import hashing
import ledger_sql
import lineage
import lineage_page
import merkle
import metrics
import per_run
import profiles
import quota_admission
import reencryption_scan
import reproduce
import run_queries
import s3_store
import server_concurrent
import server_listing
import sources
import step_overhead
import step_overhead_vs_kedro
import structured_logs
import sweep
import verified_read_cost
import verified_reads
from _common import (
    BENCH_DIR,
    BackgroundLoad,
    Result,
    RunInfo,
    background_line,
    format_load,
    format_table,
    log,
    process_state_kept,
    settle,
    wait_for_quiet,
)
from _report import render_results, summary_line, write_readme

BENCHMARKS = {
    "step_overhead": step_overhead.run,
    "step_overhead_vs_kedro": step_overhead_vs_kedro.run,
    "cached_chain": cached_chain.run,
    "hashing": lambda quick: hashing.run(quick, parallel=True),
    "cli_startup": cli_startup.run,
    "metrics": metrics.run,
    "lineage": lineage.run,
    "sources": sources.run,
    "contracts": contracts.run,
    "data_ops": data_ops.run,
    "reproduce": reproduce.run,
    "run_queries": run_queries.run,
    "verified_reads": verified_reads.run,
    "encryption": encryption.run,
    "reencryption_scan": reencryption_scan.run,
    "verified_read_cost": verified_read_cost.run,
    "ledger_sql": ledger_sql.run,
    "example_rerun": example_rerun.run,
    "per_run": per_run.run,
    "s3_store": s3_store.run,
    "gc": gc_dry_run.run,
    "merkle": merkle.run,
    "governance": governance.run,
    "audit_bundle": audit_bundle.run,
    "profiles": profiles.run,
    "structured_logs": structured_logs.run,
    "dask_overhead": dask_overhead.run,
    "sweep": sweep.run,
    "server": server_listing.run,
    "server_concurrent": server_concurrent.run,
    "lineage_page": lineage_page.run,
    "quota_admission": quota_admission.run,
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
    parser.add_argument(
        "--write-readme",
        action="store_true",
        help="run every benchmark and write the results section of benchmarks/README.md",
    )
    args = parser.parse_args()
    if args.write_readme and args.only:
        parser.error("--write-readme runs every benchmark: drop --only")
    names = args.only or list(BENCHMARKS)
    info = RunInfo.start(quick=args.quick, command=["benchmarks/run_all.py", *sys.argv[1:]])
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
            # Each benchmark starts from the environment and directory the run began with.
            with process_state_kept(), BackgroundLoad() as load:
                results.extend(BENCHMARKS[name](args.quick))
        except Exception:  # noqa: BLE001 - report and go on with the other benchmarks
            crashed.append(name)
            log(f"{name} crashed:\n{traceback.format_exc()}")
        loads[name] = load.cpus
        log(f"{name}: {time.perf_counter() - began:.1f} s")
    info.finish()
    elapsed = time.perf_counter() - start
    mode = "quick" if args.quick else "full"
    print(
        f"pipetrail benchmarks ({mode}); {info.machine()}; {info.started}; "
        f"pipetrail commit {info.revision()}; load average {format_load(info.load_before)} "
        f"before, {format_load(info.load_after)} after"
    )
    print(format_table(results))
    print(background_line(loads))
    print(f"\n{summary_line(results, crashed)}; total {elapsed:.0f} s")
    if args.write_readme:
        readme = BENCH_DIR / "README.md"
        write_readme(readme, render_results(info, results, loads, crashed, elapsed))
        log(f"wrote the results section of {readme}")
    if crashed:
        return 2
    unmet = [r for r in results if r.unmet]
    return 1 if unmet else 0


if __name__ == "__main__":
    sys.exit(main())
