"""Environment parity: compare the environment about to run with a reference run's.

A project (or one run) may name a *reference run*, for example the run a promoted model
came from, and a parity mode:

* ``off`` (default): nothing is compared;
* ``warn``: the differences are reported as a :class:`~pipetrail.errors.ParityWarning`
  and recorded in the ``run.started`` event under ``parity``;
* ``strict``: any difference refuses the run with
  :class:`~pipetrail.errors.ParityError` before anything is recorded.

What counts as a difference (:func:`parity_differences`) is deliberately narrower than
what ``pipetrail env diff`` shows: only facts that change what code runs.

======================================  =====================================================
counted                                 not counted
======================================  =====================================================
every installed package: added,         hostname, paths (interpreter, prefix), CPU model and
removed or another version              core counts, memory, GPUs
Python version and implementation       kernel release and version, libc, Linux distribution
OS system (Linux, Darwin, Windows)      allow-listed environment variables (thread counts,
and machine (x86_64, arm64)             ``PYTHONHASHSEED``): set them per run as needed
======================================  =====================================================

Imports ``capture``, ``store`` and the ledger reader; never ``lineage`` or ``cli``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.capture import capture_environment
from pipetrail.capture.environment_diff import diff_environments
from pipetrail.errors import (
    NotFoundError,
    ParityError,
    ParityWarning,
    PipetrailError,
    ProjectError,
)
from pipetrail.store import StoredArtifact

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pipetrail.execution.project import Project

__all__ = [
    "PARITY_MODES",
    "COUNTED_OS_KEYS",
    "ParityReport",
    "check_parity",
    "load_run_environment",
    "parity_differences",
]

PARITY_MODES = ("off", "warn", "strict")
#: OS facts that count for parity (see the module docstring).
COUNTED_OS_KEYS = ("system", "machine")


@dataclass(frozen=True)
class ParityReport:
    """The outcome of one parity check.

    Attributes:
        mode: ``warn`` or ``strict``.
        reference: the reference run id.
        differences: one dict per counted difference: ``kind`` (``package``,
            ``python`` or ``os``), ``name``, ``reference`` and ``current`` (None when
            absent on that side).
        note: why the comparison could not be made, if it could not.
    """

    mode: str
    reference: str
    differences: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the environments match (nothing counted differs)."""
        return not self.differences and self.note is None

    def lines(self) -> list[str]:
        """One readable line per difference (and the note, if any)."""
        found = [describe_difference(item) for item in self.differences]
        return found + ([self.note] if self.note else [])

    def to_record(self) -> dict[str, Any]:
        """The ``parity`` value of the ``run.started`` payload."""
        record: dict[str, Any] = {
            "mode": self.mode,
            "reference": self.reference,
            "differences": self.differences,
        }
        if self.note is not None:
            record["note"] = self.note
        return record


def describe_difference(item: Mapping[str, Any]) -> str:
    """Render one difference: ``package numpy: 1.26.4 in the reference run, 2.0.0 here``."""
    label = f"{item['kind']} {item['name']}" if item["kind"] == "package" else item["name"]
    ref, cur = item.get("reference"), item.get("current")
    absent = "not installed" if item["kind"] == "package" else "unknown"
    left = f"{ref} in the reference run" if ref is not None else f"{absent} in the reference run"
    right = f"{cur} here" if cur is not None else f"{absent} here"
    return f"{label}: {left}, {right}"


def parity_differences(
    reference: Mapping[str, Any], current: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Return the counted differences between two environment snapshots.

    Python (version, implementation), OS system and machine, then packages by name.
    """
    env = diff_environments(reference, current)
    found: list[dict[str, Any]] = [
        {"kind": "python", "name": f"python.{key}", "reference": c.a, "current": c.b}
        for key, c in env.python.items()
    ]
    found += [
        {"kind": "os", "name": f"os.{key}", "reference": c.a, "current": c.b}
        for key, c in env.os.items()
        if key in COUNTED_OS_KEYS
    ]
    packages: list[dict[str, Any]] = [
        {"kind": "package", "name": name, "reference": version, "current": None}
        for name, version in env.packages.removed.items()
    ]
    packages += [
        {"kind": "package", "name": name, "reference": None, "current": version}
        for name, version in env.packages.added.items()
    ]
    packages += [
        {"kind": "package", "name": name, "reference": c.a, "current": c.b}
        for name, c in env.packages.changed.items()
    ]
    return found + sorted(packages, key=lambda item: item["name"])


def load_run_environment(project: Project, run_ref: str) -> tuple[str, dict[str, Any] | None]:
    """Return a run's id and its recorded environment snapshot (None if unreadable).

    Raises:
        NotFoundError: no run matches ``run_ref``.
        AmbiguousPrefixError: several runs match it.
    """
    reader = project.reader()
    run_id = reader.resolve_run(run_ref)
    digest = reader.get_run(run_id)["environment"]
    if not digest:
        return run_id, None
    record = reader.artifact(digest)
    if record is None:
        return run_id, None
    try:
        value = project.registry.load(StoredArtifact.from_dict(record), project.store)
    except PipetrailError:
        return run_id, None
    return run_id, value if isinstance(value, dict) else None


def check_parity(
    project: Project,
    *,
    mode: str | None = None,
    reference: str | None = None,
    current: Mapping[str, Any] | None = None,
) -> ParityReport | None:
    """Compare the current environment with the reference run's, as the mode says.

    Reads only: nothing is stored or appended.

    Args:
        project: the project (its configuration supplies the defaults).
        mode: ``off``, ``warn`` or ``strict``; None uses the project's (``parity`` in
            ``pipetrail.toml`` or ``PIPETRAIL_PARITY``).
        reference: the reference run (id, prefix or ``latest``); None uses the
            project's ``parity_reference``.
        current: the current environment snapshot (default: captured now).

    Returns:
        None when parity is off, else the report (``warn`` has warned if it differs).

    Raises:
        ProjectError: an unknown mode, or no reference run while parity is on.
        NotFoundError: the reference run does not exist.
        ParityError: the mode is ``strict`` and the environments differ.
    """
    mode = mode if mode is not None else project.config.parity
    if mode not in PARITY_MODES:
        raise ProjectError(f"parity mode {mode!r} is unknown; use one of {', '.join(PARITY_MODES)}")
    if mode == "off":
        return None
    reference = reference if reference is not None else project.config.parity_reference
    if not reference:
        raise ProjectError(
            f'parity is "{mode}" but no reference run is set; set parity_reference = "RUN_ID" '
            "in pipetrail.toml (or PIPETRAIL_PARITY_REFERENCE), or pass --reference RUN"
        )
    try:
        run_id, snapshot = load_run_environment(project, reference)
    except NotFoundError as exc:
        # The reference may come from pipetrail.toml or the environment: say which setting.
        raise type(exc)(
            f"the parity reference run {reference!r} cannot be used: {exc}. Set "
            "parity_reference in pipetrail.toml (or PIPETRAIL_PARITY_REFERENCE, or "
            "--reference) to a recorded run"
        ) from None
    if current is None:
        current = capture_environment(cache_dir=project.config.state_dir / "cache")
    if snapshot is None:
        report = ParityReport(
            mode,
            run_id,
            note=f"the environment snapshot of reference run {run_id} is unavailable",
        )
    else:
        report = ParityReport(mode, run_id, parity_differences(snapshot, current))
    if report.ok:
        return report
    listing = "\n".join(f"  - {line}" for line in report.lines())
    if mode == "strict":
        raise ParityError(
            f"the environment differs from reference run {run_id} (parity is strict); "
            f"nothing was run:\n{listing}\nInstall the reference versions (pipetrail env "
            f"export {run_id} --format requirements), or run with --parity warn",
            reference=run_id,
            differences=tuple(report.lines()),
        )
    warnings.warn(
        f"the environment differs from reference run {run_id}:\n{listing}",
        ParityWarning,
        stacklevel=3,
    )
    return report
