"""Shared helpers for the benchmark scripts: the Result record, timing, the table.

Every benchmark module exposes ``run(quick: bool) -> list[Result]`` and can also be run
alone (``.venv/bin/python benchmarks/NAME.py [--quick]``) through :func:`main`.
Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / ".work"  # git-ignored (see .gitignore)

# The interpreter running the benchmarks is the venv's; its console scripts sit beside it.
PYTHON = sys.executable
PIPETRAIL = str(Path(sys.executable).with_name("pipetrail"))


@dataclass
class Result:
    """One row of the results table.

    Attributes:
        name: short id of the benchmark row (``script.variant``).
        measured: what was timed, in a few words.
        median: median over the repetitions, in ``unit``.
        min: fastest repetition.
        max: slowest repetition.
        unit: unit of median/min/max (``ms``, ``s``, ``GiB/s``, ``x``...).
        target: the target as text (``<= 2 ms``), or ``-`` for informational rows.
        passed: whether the median meets the target; ``None`` for informational rows,
            for rows not measured, and for rows whose spread leaves the target undecided
            (a target but no verdict: ``inconclusive``, see ``_paired.py``).
        n: number of timed repetitions (0: not measured).
        missing: why the row could not be measured (a peer that could not be installed
            or run); its figures are then NaN and it has no verdict, whatever its target.
    """

    name: str
    measured: str
    median: float
    min: float
    max: float
    unit: str
    target: str = "-"
    passed: bool | None = None
    n: int = 0
    missing: str | None = None

    @property
    def verdict(self) -> str:
        """``PASS``, ``FAIL``, ``info``, ``inconclusive`` or ``not measured``."""
        if self.missing is not None:
            return "not measured"
        if self.passed is None:
            return "info" if self.target == "-" else "inconclusive"
        return "PASS" if self.passed else "FAIL"

    @property
    def unmet(self) -> bool:
        """A row with a target not shown to be met: missed, not measured, or inconclusive."""
        return self.target != "-" and self.verdict != "PASS"


def not_measured(name: str, measured: str, unit: str, reason: str, *, target: str = "-") -> Result:
    """A row that could not be measured in this run: no figures, no verdict.

    Never a constant in place of what was not measured: a comparison with a peer that
    could not be run says so, and its target stays unchecked.
    """
    nan = math.nan
    return Result(name, measured, nan, nan, nan, unit, target, None, 0, missing=reason)


def summarize(
    name: str,
    measured: str,
    samples: Sequence[float],
    unit: str,
    *,
    at_most: float | None = None,
    at_least: float | None = None,
) -> Result:
    """Build a Result from samples; the target is checked against the median."""
    if not samples:
        raise ValueError(f"{name}: no samples")
    med = statistics.median(samples)
    target = target_text(unit, at_most=at_most, at_least=at_least)
    passed: bool | None = None
    if at_most is not None:
        passed = med <= at_most
    elif at_least is not None:
        passed = med >= at_least
    return Result(
        name=name,
        measured=measured,
        median=med,
        min=min(samples),
        max=max(samples),
        unit=unit,
        target=target,
        passed=passed,
        n=len(samples),
    )


def target_text(unit: str, *, at_most: float | None = None, at_least: float | None = None) -> str:
    """A target as the table prints it (``<= 2.00 ms``, ``>= 70.0 %``), or ``-`` for none.

    :func:`summarize` writes its targets with it; give it to :func:`not_measured` too, so
    that a row not measured states its target exactly as a measured one would.
    """
    if at_most is not None:
        return f"<= {_fmt(at_most)} {unit}"
    if at_least is not None:
        return f">= {_fmt(at_least)} {unit}"
    return "-"


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def time_call(func: Callable[[], object]) -> float:
    """Return the wall time of one call, in seconds."""
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def run_timed(
    argv: Sequence[str],
    *,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
) -> tuple[float, str]:
    """Run a command to completion; return (wall seconds, stdout).

    The timer wraps ``subprocess.run`` only, so it includes process creation, the
    interpreter start-up and everything the command does, as a shell user sees it.
    """
    start = time.perf_counter()
    proc = subprocess.run(
        list(argv),
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - start
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"command {' '.join(argv)} failed with exit code {proc.returncode}:\n"
            f"{proc.stdout}\n{proc.stderr}"
        )
    return elapsed, proc.stdout


def bench_env() -> dict[str, str]:
    """Environment for timed subprocesses: the caller's, minus settings that skew them.

    Bytecode caching is switched on (a user's installation has its ``.pyc`` files), with
    the caches kept under benchmarks/.work/pycache so that nothing is written elsewhere.
    """
    env = dict(os.environ)
    for var in ("PIPETRAIL_METADATA", "PIPETRAIL_ARTIFACTS", "PIPETRAIL_SEED"):
        env.pop(var, None)
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(WORK_DIR / "pycache")
    return env


class BackgroundLoad:
    """Measures how busy the CPUs were with *other* processes while a block ran.

    Busy CPU time of the whole machine (``/proc/stat``) minus the CPU time of this process
    and the children it waited for, divided by the wall time: ``0.0`` means the machine was
    ours alone, ``1.0`` means other processes kept one CPU busy on average. ``None`` where
    ``/proc/stat`` does not exist.
    """

    def __init__(self) -> None:
        self.cpus: float | None = None

    @staticmethod
    def _busy_seconds() -> float | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
        busy = sum(fields[:3]) + sum(fields[5:8])
        return busy / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own_seconds() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def __enter__(self) -> BackgroundLoad:
        self._busy = self._busy_seconds()
        self._own = self._own_seconds()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        busy = self._busy_seconds()
        if busy is None or self._busy is None:
            return
        wall = time.perf_counter() - self._wall
        foreign = (busy - self._busy) - (self._own_seconds() - self._own)
        self.cpus = max(0.0, foreign / wall) if wall > 0 else None


def format_table(results: Sequence[Result]) -> str:
    """Render results as a fixed-width text table."""
    headers = ["benchmark", "measured", "n", "median", "min", "max", "unit", "target", "result"]
    rows = [
        [
            r.name,
            r.measured,
            str(r.n),
            _fmt(r.median),
            _fmt(r.min),
            _fmt(r.max),
            r.unit,
            r.target,
            r.verdict,
        ]
        for r in results
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    numeric = {2, 3, 4, 5}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in numeric else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(row) for row in rows)
    return "\n".join(out)


def git_revision() -> tuple[str, list[str]]:
    """The commit of the working tree, and the top-level paths that differ from it.

    Read-only git calls (``--no-optional-locks``: not even the index is refreshed). The
    paths are those with changes to tracked files (staged or not) and untracked files
    that are not ignored; ``benchmarks/README.md`` itself is left out (a run writes it).
    Returns ``("unknown", [])`` outside a git checkout.
    """
    git = ["git", "--no-optional-locks", "-C", str(REPO_ROOT)]
    try:
        head = subprocess.run(
            [*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            [*git, "status", "--porcelain=v1", "-z", "--untracked-files=normal"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown", []
    changed: set[str] = set()
    entries = iter(status.split("\0"))
    for entry in entries:
        if len(entry) < 4:
            continue
        path = entry[3:]
        if entry[0] in "RC":
            next(entries, None)  # the rename's source path follows
        if path != "benchmarks/README.md":
            changed.add(path.split("/", 1)[0] + ("/" if "/" in path else ""))
    return head, sorted(changed)


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _load() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


@dataclass
class RunInfo:
    """Where and when one benchmark run happened: printed above its table.

    ``load_before`` and ``load_after`` are ``os.getloadavg()`` (1, 5 and 15 minutes) at
    the start and the end of the run: how many processes were running or waiting for a
    CPU, ours included.
    """

    commit: str
    dirty: list[str]
    started: str
    python: str
    system: str
    cpus: int | None
    usable_cpus: int | None
    memory_bytes: int | None
    load_before: tuple[float, float, float] | None
    load_after: tuple[float, float, float] | None = None
    command: list[str] = field(default_factory=list)
    quick: bool = False

    @classmethod
    def start(cls, *, quick: bool, command: Sequence[str] | None = None) -> RunInfo:
        """Take everything but ``load_after`` now, at the start of a run."""
        head, dirty = git_revision()
        usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        return cls(
            commit=head,
            dirty=dirty,
            started=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            python=f"{platform.python_implementation()} {platform.python_version()}",
            system=f"{platform.system()} {platform.release()} {platform.machine()}",
            cpus=os.cpu_count(),
            usable_cpus=usable,
            memory_bytes=_memory_bytes(),
            load_before=_load(),
            command=list(command if command is not None else sys.argv),
            quick=quick,
        )

    def finish(self) -> None:
        """Record the load average at the end of the run."""
        self.load_after = _load()

    def machine(self) -> str:
        """``Linux 6.1 x86_64, 2 CPUs, 23.5 GiB, CPython 3.11.7``."""
        cpus = f"{self.cpus} CPUs" if self.cpus else "CPUs unknown"
        if self.usable_cpus is not None and self.usable_cpus != self.cpus:
            cpus += f" ({self.usable_cpus} usable)"
        memory = f"{self.memory_bytes / 2**30:.1f} GiB" if self.memory_bytes else "memory unknown"
        return f"{self.system}, {cpus}, {memory}, {self.python}"

    def revision(self) -> str:
        """``abc123def456`` or ``abc123def456 + uncommitted changes in src/, tests/``."""
        state = f" + uncommitted changes in {', '.join(self.dirty)}" if self.dirty else ""
        return f"{self.commit}{state}"


def format_load(load: tuple[float, float, float] | None) -> str:
    """``1.02 / 0.75 / 0.40`` (1, 5, 15 minutes), or ``n/a``."""
    return "n/a" if load is None else " / ".join(f"{x:.2f}" for x in load)


def background_line(loads: dict[str, float | None]) -> str:
    """Footnote on how busy other processes kept the CPUs while benchmarks ran."""
    parts = [f"{name} {'n/a' if cpus is None else f'{cpus:.2f}'}" for name, cpus in loads.items()]
    return (
        f"background load (CPUs kept busy by other processes, of {os.cpu_count()}): "
        + ", ".join(parts)
    )


def settle() -> None:
    """Flush dirty pages and collect garbage, so earlier work does not bleed into timings.

    Writing files (the hashing set, the stores of earlier benchmarks) leaves the kernel
    writing back in the background, which competes for the CPUs of a small machine.
    """
    import gc

    os.sync()
    gc.collect()
    time.sleep(0.2)


@contextlib.contextmanager
def process_state_kept() -> Iterator[None]:
    """Put ``os.environ`` and the current directory back as they were when the block ends.

    ``run_all.py`` runs every benchmark in one process: a benchmark that sets, changes or
    removes an environment variable (``PIPETRAIL_HOME``, ``PIPETRAIL_METADATA``...) or
    changes directory would otherwise leave it so for the benchmarks after it. Variables
    the block added are removed, those it changed or removed get their old values back,
    and the directory is restored, also when the block raises.
    """
    environ = dict(os.environ)
    directory = os.getcwd()
    try:
        yield
    finally:
        os.chdir(directory)
        for name in [name for name in os.environ if name not in environ]:
            del os.environ[name]
        for name, value in environ.items():
            if os.environ.get(name) != value:
                os.environ[name] = value


def wait_for_quiet(max_seconds: float, threshold: float = 0.25) -> float | None:
    """Wait until other processes use less than ``threshold`` CPUs over one second.

    Gives up after ``max_seconds``. Returns the background load of the last window.
    """
    deadline = time.perf_counter() + max_seconds
    while True:
        with BackgroundLoad() as load:
            time.sleep(1.0)
        if load.cpus is None or load.cpus < threshold or time.perf_counter() >= deadline:
            return load.cpus
        log(f"  waiting for a quiet machine (other processes: {load.cpus:.2f} CPUs)")


def log(message: str) -> None:
    """Progress messages go to stderr so the table on stdout stays clean."""
    print(message, file=sys.stderr, flush=True)


def main(
    run: Callable[..., list[Result]],
    description: str,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> int:
    """Command-line entry point shared by the scripts: parse ``--quick``, run, print."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    if extra is not None:
        extra(parser)
    args = vars(parser.parse_args())
    quick = args.pop("quick")
    info = RunInfo.start(quick=quick)
    with BackgroundLoad() as load:
        results = run(quick, **args)
    info.finish()
    print(
        f"{info.machine()}; {info.started}; pipetrail commit {info.revision()}; load average "
        f"{format_load(info.load_before)} before, {format_load(info.load_after)} after"
    )
    print(format_table(results))
    print(background_line({"this benchmark": load.cpus}))
    return 1 if any(r.unmet for r in results) else 0
