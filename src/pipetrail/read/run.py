"""A recorded run, opened for reading: what it was, its steps, metrics and artifacts.

A :class:`Run` is a snapshot of the record when it was opened (status, tags...); its
step runs and notes are read on first use. Outputs load through the store's verified
reads, read as the run's step events record them (the same path as
:class:`pipetrail.execution.run.Run`, which this wraps). A failed, crashed or
interrupted run opens the same way: its steps and whatever its finished steps stored are
there, and an output a step never produced is a :class:`~pipetrail.errors.NotFoundError`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from pipetrail.errors import NotFoundError
from pipetrail.execution.crash import effective_status, effective_step_status
from pipetrail.execution.metrics import METRIC_OUTPUT_PREFIX, decode_series
from pipetrail.execution.records import is_recorded_output
from pipetrail.execution.run import Run as _ExecutedRun
from pipetrail.ledger.event_reads import closing_step_events
from pipetrail.ledger.read_model import (
    NoteRecord,
    RunRecord,
    StepRunRecord,
    run_notes,
    step_run_records,
)
from pipetrail.read.results import MetricSeries

if TYPE_CHECKING:
    import datetime as dt

    from pipetrail.read.project import Project

__all__ = ["Run"]


class Run:
    """One recorded run of a project (see :meth:`pipetrail.Project.runs`).

    Attributes:
        id: the run id (time-ordered).
        name: its name, or None.
        pipeline: the pipeline's name.
        status: ``running``, ``completed``, ``failed``, ``crashed`` or ``interrupted``
            (a ``running`` run whose process is gone reads as ``crashed``).
        purpose: ``run`` (ordinary), ``reproduce`` or ``check``.
        params: the parameter values it ran with.
        seed: the run seed.
        started_at: when it started (ISO-8601 UTC text).
        ended_at: when it ended, or None.
        error: why it did not complete, or None.
        tags: its tags when it was opened.
        record: the whole record of the run (owner, host, git, environment...).
    """

    def __init__(self, project: Project, record: RunRecord) -> None:
        self._project = project
        self.record = record
        self.id = record.run_id
        self.name = record.name
        self.pipeline = record.pipeline
        self.status = effective_status(
            {"status": record.status, "host": record.host, "process": record.process}
        )
        self.purpose = record.purpose
        self.params: dict[str, Any] = dict(record.params)
        self.seed = record.seed
        self.started_at = record.started_at
        self.ended_at = record.ended_at
        self.error = record.error
        self.tags: dict[str, str] = dict(record.tags)
        self._steps: list[StepRunRecord] | None = None
        self._executed: _ExecutedRun | None = None

    def __repr__(self) -> str:
        named = f" {self.name!r}" if self.name else ""
        return f"<Run {self.id}{named} {self.pipeline} {self.status}>"

    @property
    def started(self) -> dt.datetime:
        """When it started, as an aware datetime."""
        import datetime as dt

        return dt.datetime.fromisoformat(self.started_at.replace("Z", "+00:00"))

    @property
    def steps(self) -> list[StepRunRecord]:
        """Its step runs in the order they started (status as the run's end decides)."""
        if self._steps is None:
            self._steps = [
                replace(s, status=effective_step_status(self.status, s.status))
                for s in step_run_records(self._project.reader(), self.id)
            ]
        return self._steps

    @property
    def notes(self) -> list[NoteRecord]:
        """Its notes, oldest first (read when asked)."""
        return run_notes(self._project.reader(), self.id)

    def step(self, name: str) -> StepRunRecord:
        """Return the step run of ``name`` (node id, or a step name that ran once).

        Raises:
            NotFoundError: no such step (the message lists the run's nodes).
            AmbiguousPrefixError: the step ran several times; name the node.
        """
        node_id = self._project.reader().find_step_run(self.id, name)["node_id"]
        return next(s for s in self.steps if s.node_id == node_id)

    def _run(self) -> _ExecutedRun:
        if self._executed is None:
            self._executed = _ExecutedRun(
                self.id, self._project, pipeline=self.pipeline, status=self.status, result=None
            )
        return self._executed

    def artifact(self, step: str, output: str | None = None) -> Any:
        """Return the value one step output, loaded from the store (verified).

        Args:
            step: the node id, or a step name that ran once in this run.
            output: the output's name; may be left out when the step has one output.

        Raises:
            NotFoundError: no such step or output (the message names those there are).
            IntegrityError: the stored bytes are corrupt (the store quarantined them).
        """
        record = self.step(step)
        if output is None:
            returned = [n for n in record.outputs if not is_recorded_output(n)]
            if len(returned) != 1:
                raise NotFoundError(
                    f"step {record.node_id!r} of run {self.id} has "
                    + (
                        f"several outputs ({', '.join(returned)}); name one with output="
                        if returned
                        else f"no output (its status is {record.status})"
                    )
                )
            output = returned[0]
        return self._run().output_of(record.node_id, output)

    def metrics(self, step: str | None = None) -> dict[str, MetricSeries]:
        """Return the metric series the run's steps logged (or reused from the cache).

        Args:
            step: only this step's (node id or step name); default: every step's.

        Returns:
            metric name -> series. When several nodes log the same name, each is keyed
            ``NODE:NAME`` (``evaluate[1]:f1``).

        Raises:
            NotFoundError: no such step, or a series is not recorded.
        """
        steps = [self.step(step)] if step is not None else self.steps
        reader = self._project.reader()
        logged = {e.step_run_id: e.metrics for e in closing_step_events(reader, self.id)}
        found: list[tuple[str, MetricSeries]] = []
        for record in steps:
            # Outputs list the series of a step that completed or was cached; a failed
            # step's event still names the series it logged before failing.
            digests = {
                k.removeprefix(METRIC_OUTPUT_PREFIX): v
                for k, v in record.outputs.items()
                if k.startswith(METRIC_OUTPUT_PREFIX)
            }
            for name, ref in (logged.get(record.step_run_id) or {}).items():
                if isinstance(ref, dict) and isinstance(ref.get("digest"), str):
                    digests.setdefault(name, ref["digest"])
            for name in sorted(digests):
                xs, ys = self._series(record.node_id, digests[name])
                found.append((name, MetricSeries(name, record.node_id, xs, ys)))
        counts: dict[str, int] = {}
        for name, _ in found:
            counts[name] = counts.get(name, 0) + 1
        return {
            (name if counts[name] == 1 else f"{series.node_id}:{name}"): series
            for name, series in found
        }

    def _series(self, node_id: str, digest: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
        record = self._project.reader().artifact(digest)
        if record is None:
            raise NotFoundError(
                f"metric series {digest} of step {node_id!r} in run {self.id} is not "
                "recorded; run `pipetrail audit verify`"
            )
        steps, values = decode_series(self._project.store.get_bytes(record["blob"]))
        return tuple(steps), tuple(values)

    def tag(self, **tags: Any) -> None:
        """Set tags on this run (an event in the ledger); see :meth:`Project.tag`."""
        self.tags = self._project.tag(self.id, **tags)

    def untag(self, *keys: str) -> None:
        """Remove tags from this run (an event in the ledger)."""
        self.tags = self._project.untag(self.id, *keys)

    def note(self, text: str) -> None:
        """Add a note to this run (an event in the ledger)."""
        self._project.note(self.id, text)

    def rename(self, name: str) -> None:
        """Give this run a name (an event in the ledger)."""
        self.name = self._project.rename(self.id, name)
