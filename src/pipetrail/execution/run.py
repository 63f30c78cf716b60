"""The result of running a pipeline: its id, status and outputs (loaded on access).

Outputs are read from the store when first asked for (never handed over from the run's
memory), so a run whose steps executed and one served from the cache give the same
values.

Also reads back what steps logged: :meth:`Run.metrics` decodes metric series without
numpy (see :mod:`pipetrail.execution.metrics` for their format).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.errors import IntegrityError
from pipetrail.execution.metrics import METRIC_OUTPUT_PREFIX, decode_series
from pipetrail.execution.records import is_recorded_output
from pipetrail.store import StoredArtifact

if TYPE_CHECKING:
    from pipetrail.execution.project import Project

__all__ = ["Run"]


class Run:
    """A finished run.

    Attributes:
        id: the run id (time-ordered).
        pipeline: the pipeline's name.
        status: ``completed``.
        result: the pipeline's return value with every step output replaced by its
            artifact digest.
    """

    def __init__(
        self,
        run_id: str,
        project: Project,
        *,
        pipeline: str,
        status: str,
        result: Any,
    ) -> None:
        self.id = run_id
        self.project = project
        self.pipeline = pipeline
        self.status = status
        self.result = result
        self._values: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.pipeline} {self.status}>"

    def load(self, digest: str) -> Any:
        """Return the value of an artifact by digest, loaded from the store on first use.

        Later calls with the same digest return the same object.

        Raises:
            NotFoundError: the artifact is not recorded in the project.
            IntegrityError: its stored bytes are corrupt (the store quarantined them).
        """
        if digest in self._values:
            return self._values[digest]
        record = self.project.reader().artifact(digest)
        if record is None:
            from pipetrail.errors import NotFoundError

            raise NotFoundError(f"artifact {digest} is not recorded in this project")
        stored = StoredArtifact.from_dict(record)
        try:
            value = self.project.registry.load(stored, self.project.store)
        except IntegrityError as exc:
            raise IntegrityError(
                f"artifact {digest} of run {self.id} cannot be loaded: {exc}"
            ) from exc
        self._values[digest] = value
        return value

    @property
    def outputs(self) -> Any:
        """The pipeline's return value, with real values (loaded on first access)."""
        return self._materialize(self.result)

    def _materialize(self, item: Any) -> Any:
        if isinstance(item, str):
            return self.load(item)
        if isinstance(item, list):
            return [self._materialize(v) for v in item]
        if isinstance(item, dict):
            return {k: self._materialize(v) for k, v in item.items()}
        return item

    def steps(self) -> list[dict[str, Any]]:
        """Return the recorded step runs of this run, in order."""
        return self.project.reader().step_runs(self.id)

    def step(self, name: str) -> dict[str, Any]:
        """Return the recorded step run of ``name`` (node id or step name)."""
        return self.project.reader().find_step_run(self.id, name)

    def output_of(self, step: str, output: str = "output") -> Any:
        """Return the value of one output of one step of this run."""
        record = self.step(step)
        outputs = record["outputs"] or {}
        if output not in outputs:
            from pipetrail.errors import NotFoundError

            returned = [name for name in outputs if not is_recorded_output(name)]
            raise NotFoundError(
                f"step {step!r} of run {self.id} has no output {output!r}; it has "
                + (", ".join(returned) or "none")
            )
        return self.load(outputs[output])

    def metrics(self, step: str) -> dict[str, list[tuple[int, float]]]:
        """Return the metric series one step logged (or reused from the cache).

        Args:
            step: the node id or step name.

        Returns:
            metric name -> ``[(step index, value), ...]`` in logging order; empty when the
            step logged nothing.

        Raises:
            NotFoundError: the run has no such step, or a series is not recorded.
        """
        outputs = self.step(step)["outputs"] or {}
        series: dict[str, list[tuple[int, float]]] = {}
        for key in sorted(outputs):
            if key.startswith(METRIC_OUTPUT_PREFIX):
                record = self.project.reader().artifact(outputs[key])
                if record is None:
                    from pipetrail.errors import NotFoundError

                    raise NotFoundError(
                        f"metric series {outputs[key]} of step {step!r} in run {self.id} is "
                        "not recorded; run `pipetrail audit verify`"
                    )
                steps, values = decode_series(self.project.store.get_bytes(record["blob"]))
                series[key.removeprefix(METRIC_OUTPUT_PREFIX)] = list(
                    zip(steps, values, strict=True)
                )
        return series
