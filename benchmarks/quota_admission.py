"""What quotas cost per executed step: a chain of trivial steps with and without ``[quotas]``.

Each repetition makes two fresh projects in new temporary folders, one with no
``pipetrail.toml`` and one whose ``pipetrail.toml`` holds only::

    [quotas]
    concurrent_steps = 64
    cpu_hours_per_day = 1000000

and runs the same chain of trivial steps in each (every step executes: a fresh
project has nothing cached), in this process, the two in alternating order. With quotas,
each step's check and its ``step.started`` share one write transaction under the
ledger's lock (docs/adr/0030-quota-admission-under-the-ledger-lock.md): one commit and
two reads per executed step; without, the run is as it was (no extra read, no extra
transaction). Figures are CPU time of this process per step (``time.process_time``,
steady while other processes load the machine), and wall time per step. ``STEPS`` = 300;
9 repetitions (``--quick``: 3) after a 20-step warm-up of each kind.

| row | what | target |
|-----|------|--------|
| ``quota_admission.cpu_without`` | CPU ms per executed step, no ``[quotas]`` | context |
| ``quota_admission.cpu_with`` | CPU ms per executed step, ``[quotas]`` | context |
| ``quota_admission.cpu_extra`` | with - without, per repetition | <= 1 ms |
| ``quota_admission.wall_without``, ``.wall_with`` | wall ms per step | context |

Run: ``.venv/bin/python benchmarks/quota_admission.py [--quick]``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import _chain
from _common import Result, log, main, summarize, time_call

STEPS = 300
QUOTAS = "[quotas]\nconcurrent_steps = 64\ncpu_hours_per_day = 1000000\n"
# What a quota may add to an executed step, in CPU time of the coordinator.
TARGET_EXTRA_CPU_MS = 1.0


def _project(quotas: bool) -> Path:
    root = Path(tempfile.mkdtemp(prefix="pipetrail-bench-quotas-"))
    if quotas:
        (root / "pipetrail.toml").write_text(QUOTAS)
    return root


def _per_step(quotas: bool, n: int) -> tuple[float, float]:
    """Run the chain uncached in a fresh project; return (CPU ms, wall ms) per step."""
    root = _project(quotas)
    runner = _chain.chain.with_options(project=root)
    try:
        holder: list[object] = []
        cpu = time.process_time()
        seconds = time_call(lambda: holder.append(runner.run(n=n)))
        cpu = time.process_time() - cpu
        run = holder[0]
        statuses = [s["status"] for s in run.steps()]  # type: ignore[attr-defined]
        if statuses.count("completed") != n or run.outputs != n:  # type: ignore[attr-defined]
            raise RuntimeError(f"the run is wrong: {set(statuses)}")
    finally:
        if runner.project is not None:
            runner.project.close()
        shutil.rmtree(root, ignore_errors=True)
    return cpu / n * 1e3, seconds / n * 1e3


def run(quick: bool) -> list[Result]:
    reps = 3 if quick else 9
    n = STEPS
    log(f"quota_admission: warm-up, then {reps} x (without + with quotas) runs of {n} steps")
    _per_step(False, 20)
    _per_step(True, 20)
    cpu: dict[bool, list[float]] = {False: [], True: []}
    wall: dict[bool, list[float]] = {False: [], True: []}
    extra: list[float] = []
    for i in range(reps):
        order = (False, True) if i % 2 == 0 else (True, False)
        got = {}
        for quotas in order:
            got[quotas] = _per_step(quotas, n)
            cpu[quotas].append(got[quotas][0])
            wall[quotas].append(got[quotas][1])
        extra.append(got[True][0] - got[False][0])
        log(
            f"  rep {i + 1}: CPU {got[False][0]:.3f} ms/step without quotas, "
            f"{got[True][0]:.3f} with"
        )
    return [
        summarize(
            "quota_admission.cpu_without",
            f"CPU per executed step, no [quotas], {n}-step chain",
            cpu[False],
            "ms",
        ),
        summarize(
            "quota_admission.cpu_with",
            f"CPU per executed step, [quotas] checked under the lock, {n}-step chain",
            cpu[True],
            "ms",
        ),
        summarize(
            "quota_admission.cpu_extra",
            "CPU the quota check and its transaction add per step (same repetition)",
            extra,
            "ms",
            at_most=TARGET_EXTRA_CPU_MS,
        ),
        summarize("quota_admission.wall_without", "wall per step, no [quotas]", wall[False], "ms"),
        summarize("quota_admission.wall_with", "wall per step, [quotas]", wall[True], "ms"),
    ]


if __name__ == "__main__":
    sys.exit(main(run, (__doc__ or "").splitlines()[0]))
