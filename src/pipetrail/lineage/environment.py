"""The environments of recorded runs: load one, compare two (``pipetrail env diff``).

The comparison itself is :func:`pipetrail.capture.environment_diff.diff_environments`,
the same one ``pipetrail diff`` shows; :func:`diff_run_environments` adds which of the
differences count for environment parity (:mod:`pipetrail.execution.parity`). Exports
that rebuild an environment live in :mod:`pipetrail.lineage.exports.environment`.
Read-only. Never imports cli.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.capture.environment_diff import EnvironmentDiff, diff_environments
from pipetrail.execution.parity import (
    describe_difference,
    load_run_environment,
    parity_differences,
)
from pipetrail.lineage.exports.collect import ExportError

if TYPE_CHECKING:
    from pipetrail.execution.project import Project

__all__ = [
    "EnvironmentComparison",
    "RecordedEnvironment",
    "diff_run_environments",
    "load_recorded_environment",
]


@dataclass(frozen=True)
class RecordedEnvironment:
    """A run's environment snapshot and the facts that name it.

    Attributes:
        run_id: the run.
        pipeline: its pipeline's name.
        started_at: when it started.
        pipetrail_version: the pipetrail version that recorded it.
        snapshot: the environment snapshot.
    """

    run_id: str
    pipeline: str
    started_at: str
    pipetrail_version: str | None
    snapshot: dict[str, Any]


def load_recorded_environment(project: Project, run_ref: str) -> RecordedEnvironment:
    """Load a run's environment snapshot.

    Raises:
        NotFoundError: no run matches ``run_ref``.
        ExportError: the run's snapshot is missing from the store or unreadable.
    """
    run_id, snapshot = load_run_environment(project, run_ref)
    if snapshot is None:
        raise ExportError(
            f"the environment snapshot of run {run_id} is missing or unreadable; "
            "check the store with `pipetrail store verify`"
        )
    run = project.reader().get_run(run_id)
    record = run.get("record") or {}
    return RecordedEnvironment(
        run_id=run_id,
        pipeline=str(run["pipeline"]),
        started_at=str(run["started_at"]),
        pipetrail_version=record.get("pipetrail_version"),
        snapshot=snapshot,
    )


@dataclass(frozen=True)
class EnvironmentComparison:
    """Run B's environment against run A's.

    Attributes:
        a: run A's id.
        b: run B's id.
        diff: every difference (Python, OS, hardware, packages, environment variables).
        parity: the differences that count for environment parity, one line each (A is
            the reference): empty means a parity check against A would pass.
    """

    a: str
    b: str
    diff: EnvironmentDiff
    parity: list[str]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of ``pipetrail env diff``."""
        return {"a": self.a, "b": self.b, **asdict(self.diff), "parity": self.parity}


def diff_run_environments(project: Project, a: str, b: str) -> EnvironmentComparison:
    """Compare run ``b``'s environment with run ``a``'s (ids, prefixes or ``latest``).

    A snapshot that is unavailable compares as empty, with a note.

    Raises:
        NotFoundError: a ref matches no run.
        AmbiguousPrefixError: a ref matches several runs.
    """
    run_a, snap_a = load_run_environment(project, a)
    run_b, snap_b = load_run_environment(project, b)
    reader = project.reader()
    digests = (reader.get_run(run_a)["environment"], reader.get_run(run_b)["environment"])
    diff = diff_environments(snap_a, snap_b, digests=digests)
    parity = []
    if snap_a is not None and snap_b is not None:
        parity = [describe_difference(d) for d in parity_differences(snap_a, snap_b)]
    return EnvironmentComparison(run_a, run_b, diff, parity)
