"""The result of running a pipeline: its id, status and outputs (loaded on access).

Outputs are read from the store when first asked for (never handed over from the run's
memory), so a run whose steps executed and one served from the cache give the same
values. Each is read as the run's own step event records (``output_formats``: equal bytes
may be a ``bytes`` output of one step and a ``Path`` of another); an output recorded
before step events said so is read as its artifact's record says
(docs/adr/0013-how-an-output-is-read.md).

Also reads back what steps logged: :meth:`Run.metrics` decodes metric series without
numpy (see :mod:`pipetrail.execution.metrics` for their format).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.errors import IntegrityError, NotFoundError
from pipetrail.execution.metric_format import METRIC_OUTPUT_PREFIX, decode_series
from pipetrail.execution.records import is_recorded_output
from pipetrail.hashing import canonical_json
from pipetrail.store import StoredArtifact
from pipetrail.store.serializers.registry import record_from_reading

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
        result_outputs: Any = None,
    ) -> None:
        """Describe a finished run.

        Args:
            run_id: the run id.
            project: the project it ran in.
            pipeline: the pipeline's name.
            status: the run's status.
            result: the return value, step outputs replaced by their digests.
            result_outputs: ``result`` with each digest replaced by ``[node id, output
                name]`` (so equal digests read differently by two steps stay apart);
                None reads each digest as :meth:`load` does.
        """
        self.id = run_id
        self.project = project
        self.pipeline = pipeline
        self.status = status
        self.result = result
        self._result_outputs = result_outputs
        self._values: dict[tuple[str, str | None], Any] = {}
        self._index: _OutputIndex | None = None
        self._returned: dict[tuple[str, str], tuple[str, dict[str, Any]]] | None = None

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.pipeline} {self.status}>"

    def load(self, digest: str) -> Any:
        """Return the value of an artifact by digest, loaded from the store on first use.

        It is read as the first step of this run that output it recorded; an artifact no
        step of this run output (or one recorded before step events said how outputs are
        read) is read as its artifact record says. Later calls with the same digest
        return the same object.

        Raises:
            NotFoundError: the artifact is not recorded in the project.
            IntegrityError: its stored bytes are corrupt (the store quarantined them).
        """
        return self._load(digest, self._outputs().by_digest.get(digest))

    def _load(self, digest: str, reading: dict[str, Any] | None) -> Any:
        cache_key = (digest, None if reading is None else canonical_json(reading))
        if cache_key in self._values:
            return self._values[cache_key]
        if reading is not None:
            stored = record_from_reading(digest, reading)
        else:
            record = self.project.reader().artifact(digest)
            if record is None:
                raise NotFoundError(f"artifact {digest} is not recorded in this project")
            stored = StoredArtifact.from_dict(record)
        try:
            value = self.project.registry.load(stored, self.project.store_for(stored))
        except IntegrityError as exc:
            raise IntegrityError(
                f"artifact {digest} of run {self.id} cannot be loaded: {exc}"
            ) from exc
        self._values[cache_key] = value
        return value

    def _outputs(self) -> _OutputIndex:
        """How this run's step events say each output is read (read once)."""
        if self._index is None:
            self._index = _OutputIndex(self.project.reader().step_outputs(self.id))
        return self._index

    def _returned_outputs(self) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
        """:attr:`_OutputIndex.by_output` for the nodes the result names (read once).

        Only those nodes' step events are read and verified, not every one of the run:
        the result of a long chain is one step's output.
        """
        if self._index is not None:
            return self._index.by_output
        if self._returned is None:
            nodes = sorted(_result_nodes(self._result_outputs))
            if len(nodes) > _NODES_READ_APART:
                return self._outputs().by_output
            steps = self.project.reader().step_outputs(self.id, node_ids=nodes)
            self._returned = _OutputIndex(steps).by_output
        return self._returned

    @property
    def outputs(self) -> Any:
        """The pipeline's return value, with real values (loaded on first access)."""
        return self._materialize(self.result, self._result_outputs)

    def _materialize(self, item: Any, ref: Any) -> Any:
        if isinstance(item, str):
            if isinstance(ref, list) and len(ref) == 2:
                found = self._returned_outputs().get((ref[0], ref[1]))
                if found is not None and found[0] == item:
                    return self._load(item, found[1])
            return self.load(item)
        if isinstance(item, list):
            items = ref if isinstance(ref, list) and len(ref) == len(item) else [None] * len(item)
            return [self._materialize(v, r) for v, r in zip(item, items, strict=True)]
        if isinstance(item, dict):
            keyed = ref if isinstance(ref, dict) else {}
            return {k: self._materialize(v, keyed.get(k)) for k, v in item.items()}
        return item

    def steps(self) -> list[dict[str, Any]]:
        """Return the recorded step runs of this run, in order."""
        return self.project.reader().step_runs(self.id)

    def step(self, name: str) -> dict[str, Any]:
        """Return the recorded step run of ``name`` (node id or step name)."""
        return self.project.reader().find_step_run(self.id, name)

    def output_of(self, step: str, output: str = "output") -> Any:
        """Return the value of one output of one step of this run, read as its event says."""
        record = self.step(step)
        found = self._outputs().by_output.get((record["node_id"], output))
        if found is not None:
            return self._load(*found)
        outputs = record["outputs"] or {}
        if output not in outputs:
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
                    raise NotFoundError(
                        f"metric series {outputs[key]} of step {step!r} in run {self.id} is "
                        "not recorded; run `pipetrail audit verify`"
                    )
                steps, values = decode_series(self.project.store.get_bytes(record["blob"]))
                series[key.removeprefix(METRIC_OUTPUT_PREFIX)] = list(
                    zip(steps, values, strict=True)
                )
        return series


class _OutputIndex:
    """A run's outputs as its step events record them.

    ``by_output``: (node id, output name) -> (digest, reading); ``by_digest``: digest ->
    the reading of the first step (in run order) that output it. Made from the rows of
    :meth:`~pipetrail.ledger.queries.Reader.step_outputs`, in run order.
    """

    def __init__(self, steps: list[dict[str, Any]]) -> None:
        self.by_output: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        self.by_digest: dict[str, dict[str, Any]] = {}
        for step in steps:
            formats = step.get("output_formats") or {}
            for name, digest in (step.get("outputs") or {}).items():
                reading = formats.get(name)
                if reading is not None:
                    self.by_output[(step["node_id"], name)] = (digest, reading)
                    self.by_digest.setdefault(digest, reading)


# A result naming more nodes than this is read with the whole run's outputs (one query
# that lists the node ids would grow with them).
_NODES_READ_APART = 100


def _result_nodes(ref: Any) -> set[str]:
    """The node ids a ``result_outputs`` value names (see :class:`Run`)."""
    if isinstance(ref, list):
        if len(ref) == 2 and isinstance(ref[0], str) and isinstance(ref[1], str):
            return {ref[0]}
        return set().union(*map(_result_nodes, ref)) if ref else set()
    if isinstance(ref, dict):
        return set().union(*map(_result_nodes, ref.values())) if ref else set()
    return set()
