"""Sweeps: one pipeline run once per point of a parameter grid, grouped under a sweep id.

A grid maps parameter names to lists of values; its points are their cartesian product,
in the order given (the last name varies fastest). Every point is checked against the
pipeline's parameters before anything runs, so a name the pipeline does not take or a
value of the wrong type records nothing.

Each run records its place in the sweep as the typed ``sweep`` field of its
``run.started`` event (``{"id", "index", "size"}``; kept in the run's ``record``, so the
derived tables need no new column) and carries the tag ``sweep=ID``, so that
``pipetrail runs --tag sweep=ID`` lists them. The typed field is what
:func:`sweep_run_ids` trusts: a tag can be removed, the event cannot.

Runs share cached upstream steps like any runs of the project: a step with the same
code, inputs and parameters as in an earlier point is a cache hit. With
``max_parallel`` above 1, up to that many runs go on at once, each in its own thread
with its own coordinator (its own ledger connection and store handle); the ledger
serializes their appends (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock). A
``dask`` executor's cluster is made once and shared by every run of the sweep; a
``processes`` executor makes one pool per run.

A failing run does not stop the sweep: its row says why, and the others go on. Ctrl-C
stops the sweep: the run in progress is recorded as interrupted (runs already going on
in other threads finish first) and no new run starts.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.core.clock import new_id
from pipetrail.errors import (
    ParamError,
    PipetrailError,
    QuotaExceededError,
    RunInterruptedError,
    StepFailedError,
)
from pipetrail.execution.executors import ConcurrentExecutor, resolve_executor
from pipetrail.execution.loader import pipeline_modules
from pipetrail.execution.params_files import resolve_run_params
from pipetrail.execution.run_state import RunOptions
from pipetrail.ledger.read_model import run_metric_values
from pipetrail.ledger.sweep_reads import sweep_places

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    from pipetrail.core.pipeline import PipelineDefinition
    from pipetrail.execution.executors import Executor
    from pipetrail.execution.observer import RunObserver
    from pipetrail.execution.project import Project
    from pipetrail.ledger.queries import Reader

__all__ = [
    "SweepResult",
    "SweepRun",
    "grid_points",
    "parse_grid",
    "run_sweep",
    "sweep_run_ids",
]

#: The tag every run of a sweep carries (its value is the sweep id).
SWEEP_TAG = "sweep"


@dataclass(frozen=True)
class SweepRun:
    """One point of a sweep and how its run went.

    Attributes:
        index: the point's position in the grid (0-based).
        params: the point's values of the grid's parameters, as given (the fixed
            parameters of the sweep are not repeated).
        run_id: the run, or None when it was never recorded (refused before it started).
        status: ``completed``, ``failed``, ``interrupted`` or ``not run``.
        error: why it did not complete.
        metrics: ``NODE.NAME`` -> the run's last value of each metric.
    """

    index: int
    params: dict[str, Any]
    run_id: str | None
    status: str
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-able data."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class SweepResult:
    """A finished sweep: its id and one row per grid point, in grid order."""

    sweep_id: str
    pipeline: str
    runs: tuple[SweepRun, ...]

    @property
    def failed(self) -> tuple[SweepRun, ...]:
        """The rows whose run did not complete."""
        return tuple(r for r in self.runs if r.status != "completed")

    def to_dict(self) -> dict[str, Any]:
        """The sweep as JSON-able data."""
        return {
            "sweep_id": self.sweep_id,
            "pipeline": self.pipeline,
            "size": len(self.runs),
            "completed": len(self.runs) - len(self.failed),
            "failed": len(self.failed),
            "runs": [r.to_dict() for r in self.runs],
        }


def parse_grid(items: Iterable[str]) -> dict[str, list[str]]:
    """Parse ``NAME=V1,V2,...`` texts (``pipetrail sweep -p``) into a grid.

    Values stay text: the pipeline parses them by its parameters' types, as for
    ``pipetrail run -p``. A name given twice adds its values to the first.

    Raises:
        ParamError: an item is not ``NAME=VALUES``, or lists no value.
    """
    grid: dict[str, list[str]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParamError(f"sweep parameter {item!r} must be NAME=V1,V2,... (e.g. C=0.1,1,10)")
        parsed = [v.strip() for v in values.split(",")]
        if not any(parsed):
            raise ParamError(
                f"sweep parameter {name!r} lists no value; give at least one, as {name}=V1,V2"
            )
        if "" in parsed:
            raise ParamError(f"sweep parameter {name!r} has an empty value in {values!r}")
        grid.setdefault(name, []).extend(parsed)
    return grid


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of ``grid``, one dict per point, the last name fastest.

    Raises:
        ParamError: the grid is empty, or a name has no values.
    """
    if not grid:
        raise ParamError("the sweep's grid is empty; give at least one -p NAME=V1,V2,...")
    for name, values in grid.items():
        if len(values) == 0:
            raise ParamError(f"sweep parameter {name!r} lists no value")
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*grid.values())]


def run_sweep(
    definition: PipelineDefinition,
    grid: Mapping[str, Sequence[Any]],
    project: Project,
    options: RunOptions | None = None,
    *,
    params: Mapping[str, Any] | None = None,
    max_parallel: int = 1,
    on_run: Callable[[SweepRun], None] | None = None,
    observer_for: Callable[[Project], RunObserver] | None = None,
) -> SweepResult:
    """Run ``definition`` once per point of ``grid``, grouped under one sweep id.

    Args:
        definition: the pipeline.
        grid: parameter name -> values (Python values or text to parse).
        project: the project whose stores record the runs.
        options: settings for every run (cache, seed, executor, params files, tags...).
        params: fixed parameters of every run (the grid's values win).
        max_parallel: how many runs may go on at once.
        on_run: called with each row as its run ends (from the calling thread).
        observer_for: makes each run's observer from the project handle it records
            through (``pipetrail sweep`` sends alerts this way, as ``pipetrail run``
            does); None uses ``options.observer`` for every run.

    Returns:
        The sweep, one row per point in grid order.

    Raises:
        ParamError: an empty grid, a name the pipeline does not take, a bad value,
            or ``max_parallel`` below 1 (nothing recorded).
        RunInterruptedError: SIGINT or SIGTERM stopped the sweep.
    """
    base = options or RunOptions()
    if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
        raise ParamError(f"max_parallel must be a whole number >= 1, got {max_parallel!r}")
    points = grid_points(grid)
    fixed = dict(params or {})
    for point in points:  # every point is refused before any run starts
        resolve_run_params(definition, {**fixed, **point}, base.params_files)
    sweep_id = new_id()
    runs: dict[int, SweepRun] = {}
    with pipeline_modules(definition), _SharedExecutor(base.executor, project, max_parallel) as ex:

        def one(index: int) -> SweepRun:
            point = points[index]
            run_project = project if max_parallel == 1 else _own_project(project)
            run_options = dataclasses.replace(
                base,
                executor=ex.for_run(),
                observer=base.observer if observer_for is None else observer_for(run_project),
                tags={**(base.tags or {}), SWEEP_TAG: sweep_id},
                sweep={"id": sweep_id, "index": index, "size": len(points)},
            )
            try:
                return _run_point(definition, fixed, point, index, run_project, run_options)
            finally:
                if run_project is not project:
                    run_project.close()

        def finish(row: SweepRun) -> None:
            runs[row.index] = row
            if on_run is not None:
                on_run(row)

        if max_parallel == 1:
            for index in range(len(points)):
                finish(one(index))
        else:
            _run_parallel(one, len(points), max_parallel, finish)
    rows = _with_recorded_ids(project.reader(), sweep_id, runs, points)
    return SweepResult(sweep_id, definition.name, rows)


def _run_point(
    definition: PipelineDefinition,
    fixed: dict[str, Any],
    point: dict[str, Any],
    index: int,
    project: Project,
    options: RunOptions,
) -> SweepRun:
    """Run one point; a failed run becomes a row, an interruption is raised."""
    from pipetrail.execution.runner import run_pipeline

    try:
        run = run_pipeline(definition, {**fixed, **point}, project, options)
    except (StepFailedError, QuotaExceededError) as exc:
        return _row(project, index, point, exc.run_id, "failed", str(exc))
    except RunInterruptedError:
        raise
    except PipetrailError as exc:  # a store or executor failure, a graph the point breaks
        return SweepRun(index, point, None, "failed", str(exc))
    return _row(project, index, point, run.id, "completed", None)


def _row(
    project: Project,
    index: int,
    point: dict[str, Any],
    run_id: str | None,
    status: str,
    error: str | None,
) -> SweepRun:
    metrics: dict[str, float] = {}
    if run_id is not None:
        metrics = {m["name"]: m["value"] for m in run_metric_values(project.reader(), run_id)}
    return SweepRun(index, point, run_id, status, error, metrics)


def _run_parallel(
    one: Callable[[int], SweepRun], size: int, limit: int, finish: Callable[[SweepRun], None]
) -> None:
    """Run up to ``limit`` points at once in threads; stop starting new ones on Ctrl-C."""
    pending = iter(range(size))
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="pipetrail-sweep") as pool:
        going: set[Future[SweepRun]] = set()
        try:
            while True:
                while not stop.is_set() and len(going) < limit:
                    index = next(pending, None)
                    if index is None:
                        break
                    going.add(pool.submit(one, index))
                if not going:
                    return
                done, going = wait(going, return_when=FIRST_COMPLETED)
                for future in done:
                    finish(future.result())
        except BaseException:
            stop.set()  # the runs going on in other threads finish; none starts
            for future in going:
                future.cancel()
            raise


def _own_project(project: Project) -> Project:
    """A coordinator's own handles on ``project``'s stores (a ledger connection each)."""
    from pipetrail.execution.project import Project

    return Project(project.config, registry=project.registry)


class _SharedExecutor:
    """What executor each run of a sweep gets; one Dask cluster for the whole sweep."""

    def __init__(self, choice: Executor | str | None, project: Project, parallel: int) -> None:
        self._owner = resolve_executor(choice, project.config)  # a bad name refused here
        self._factory: Callable[[], Executor] = lambda: self._owner
        self._parallel = parallel

    def __enter__(self) -> _SharedExecutor:
        from pipetrail.execution.executors.dask_cluster import DaskExecutor

        owner = self._owner
        if isinstance(owner, DaskExecutor):
            client = owner.connect()
            self._factory = lambda: DaskExecutor(client=client)
        elif owner.name == "processes" and isinstance(owner, ConcurrentExecutor):
            from pipetrail.execution.executors.processes import ProcessExecutor

            workers = getattr(owner, "workers", None)
            self._factory = lambda: ProcessExecutor(workers=workers)
        elif isinstance(owner, ConcurrentExecutor) and self._parallel > 1:
            raise ParamError(
                f"executor {owner.name!r} cannot be shared by concurrent runs; give it by "
                "name (inline, processes, dask) or run the sweep with max_parallel=1"
            )
        return self

    def __exit__(self, *exc: object) -> None:
        from pipetrail.execution.executors.dask_cluster import DaskExecutor

        if isinstance(self._owner, DaskExecutor):
            self._owner.shutdown()

    def for_run(self) -> Executor:
        """The executor of one run."""
        return self._factory()


def _with_recorded_ids(
    reader: Reader, sweep_id: str, runs: dict[int, SweepRun], points: list[dict[str, Any]]
) -> tuple[SweepRun, ...]:
    """The rows in grid order; a failed run's id found from its record if not known."""
    recorded: dict[int, str] = {}
    for run_id, place in sweep_places(reader, sweep_id):
        recorded[int(place.get("index", -1))] = run_id
    rows = []
    for index, point in enumerate(points):
        row = runs.get(index) or SweepRun(index, point, None, "not run", "the sweep stopped")
        if row.run_id is None and index in recorded:
            row = dataclasses.replace(row, run_id=recorded[index])
        rows.append(row)
    return tuple(rows)


def sweep_run_ids(reader: Reader, sweep_id: str) -> list[str]:
    """The runs of sweep ``sweep_id`` still kept (not deleted), in grid order.

    Raises:
        NotFoundError: no run belongs to that sweep.
    """
    from pipetrail.errors import NotFoundError

    places = sweep_places(reader, sweep_id.strip())
    if not places:
        raise NotFoundError(
            f"no run belongs to sweep {sweep_id!r}; `pipetrail runs --tag sweep=ID` lists "
            "the runs of a sweep (its id is printed when it ends)"
        )
    places.sort(key=lambda item: (int(item[1].get("index", 0)), item[0]))
    return [run_id for run_id, _ in places]
