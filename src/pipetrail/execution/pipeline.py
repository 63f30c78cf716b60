"""``@pipeline``: a pipeline definition that can run itself.

``credit.run(C=0.5)`` runs with parameters; ``credit.with_options(cache=False,
seed=7).run(C=0.5)`` changes how it runs, and ``credit.with_options(params_files=
["params.yaml"]).run(C=0.5)`` takes parameters from files under the keyword ones. Run
options are kept apart from parameters so a pipeline may have a parameter called
``seed`` or ``cache``. ``credit.sweep({"C": [0.1, 1, 10]})`` runs once per point of a
grid, grouped under one sweep id (see :mod:`pipetrail.execution.sweep`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from pipetrail.core.pipeline import PipelineDefinition
from pipetrail.core.resources import parse_resources
from pipetrail.errors import DefinitionError
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.ledger.annotations import validate_name, validate_tags

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from pipetrail.execution.executors import Executor
    from pipetrail.execution.observer import RunObserver
    from pipetrail.execution.run import Run
    from pipetrail.execution.sweep import SweepResult

__all__ = ["Pipeline", "PipelineRunner", "pipeline"]


class PipelineRunner:
    """A pipeline bound to run options; call :meth:`run` with parameters."""

    def __init__(
        self, definition: PipelineDefinition, project: Project | None, options: RunOptions
    ):
        self.definition = definition
        self.project = project
        self.options = options

    def run(self, **params: Any) -> Run:
        """Run the pipeline with these parameters; see :func:`run_pipeline`."""
        project = self.project or Project.discover()
        return run_pipeline(self.definition, params, project, self.options)

    def sweep(
        self,
        grid: Mapping[str, Sequence[Any]],
        *,
        params: Mapping[str, Any] | None = None,
        max_parallel: int = 1,
    ) -> SweepResult:
        """Run once per point of ``grid`` (name -> values), under one sweep id.

        ``params`` are fixed for every run (the grid's values win); see
        :func:`~pipetrail.execution.sweep.run_sweep`. A failing run does not stop the
        others: check ``result.failed``.
        """
        from pipetrail.execution.sweep import run_sweep

        project = self.project or Project.discover()
        return run_sweep(
            self.definition,
            grid,
            project,
            self.options,
            params=params,
            max_parallel=max_parallel,
        )


class Pipeline(PipelineDefinition):
    """A ``@pipeline`` function: build it, nest it in another one, or run it."""

    def run(self, **params: Any) -> Run:
        """Run with these parameters in the project of the working directory."""
        return self.with_options().run(**params)

    def sweep(
        self,
        grid: Mapping[str, Sequence[Any]],
        *,
        params: Mapping[str, Any] | None = None,
        max_parallel: int = 1,
    ) -> SweepResult:
        """Run once per point of ``grid`` in the project of the working directory.

        ``credit.sweep({"C": [0.1, 1, 10], "penalty": ["l1", "l2"]}, max_parallel=2)``
        makes six runs; see :meth:`PipelineRunner.sweep`.
        """
        return self.with_options().sweep(grid, params=params, max_parallel=max_parallel)

    def with_options(
        self,
        *,
        project: Project | Path | str | None = None,
        cache: bool = True,
        seed: int | None = None,
        executor: Executor | str | None = None,
        retries: int = 0,
        keep_going: bool = False,
        observer: RunObserver | None = None,
        params_files: Sequence[str | Path] = (),
        parity: str | None = None,
        parity_reference: str | None = None,
        rehash: bool = False,
        name: str | None = None,
        tags: Mapping[str, Any] | None = None,
        resources: Mapping[str, Any] | None = None,
    ) -> PipelineRunner:
        """Return a runner with these run options.

        Args:
            project: a project, or the folder of one (default: discovered from the cwd).
            cache: ``False`` executes every step.
            seed: the run seed (default: the project's).
            executor: where steps run: an executor, or ``"inline"``, ``"processes"``,
                ``"dask"`` or ``"dask=tcp://HOST:PORT"`` (default: the project's).
            retries: how many times a failed step that declares no ``retries`` of its
                own is executed again (each failed attempt is recorded).
            keep_going: when a step fails, still run the steps not depending on it
                (the run is failed all the same).
            observer: receives live progress.
            params_files: YAML, TOML or JSON files of parameters, read now; later files
                win, keyword parameters of ``run`` win over all of them.
            parity: environment parity mode, ``off``, ``warn`` or ``strict`` (default:
                the project's).
            parity_reference: the run whose environment parity compares with (default:
                the project's ``parity_reference``).
            rehash: hash every source file again, ignoring the stat cache.
            name: the run's name, recorded with it.
            tags: the run's first tags (``{"stage": "baseline"}``), recorded with it.
            resources: what every step that declares no ``resources`` of its own asks
                for (``{"cpu": 1, "memory": "2GiB"}``; see ``@step(resources=...)``).

        Raises:
            ParamsFileError: a params file cannot be read or parsed.
            DefinitionError: ``retries`` is not a whole number >= 0, or ``resources``
                names an unknown resource or a bad amount.
            ParamError: the name or a tag is not valid.
        """
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise DefinitionError(f"retries must be a whole number >= 0, got {retries!r}")
        if project is not None and not isinstance(project, Project):
            project = Project.at(Path(project))
        files: tuple[Any, ...] = ()
        if params_files:  # the file readers are imported only for a run that has files
            from pipetrail.execution.params_files import load_params_file

            files = tuple(load_params_file(p) for p in params_files)
        options = RunOptions(
            cache=cache,
            seed=seed,
            executor=executor,
            retries=retries,
            keep_going=keep_going,
            observer=observer,
            params_files=files,
            parity=parity,
            parity_reference=parity_reference,
            rehash=rehash,
            name=None if name is None else validate_name(name),
            tags=validate_tags(tags) if tags else None,
            resources=parse_resources("with_options", resources),
        )
        return PipelineRunner(self, project, options)


@overload
def pipeline(func: Callable[..., Any], /) -> Pipeline: ...


@overload
def pipeline(*, name: str | None = None) -> Callable[[Callable[..., Any]], Pipeline]: ...


def pipeline(
    func: Callable[..., Any] | None = None, /, *, name: str | None = None
) -> Pipeline | Callable[[Callable[..., Any]], Pipeline]:
    """Declare a function that wires steps together as a pipeline.

    The function runs with real parameter values while the graph is built, so loops,
    comprehensions and helper functions fan out naturally. Its parameters need type
    hints (or defaults) and become the run's validated parameters.
    """

    def decorate(f: Callable[..., Any]) -> Pipeline:
        return Pipeline(f, name=name)

    if func is not None:
        return decorate(func)
    return decorate
