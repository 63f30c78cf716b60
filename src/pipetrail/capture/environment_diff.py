"""Comparing two environment snapshots (the schema of :mod:`pipetrail.capture.environment`).

Owns :func:`diff_environments`, its result :class:`EnvironmentDiff`, and the two small
value types every diff of records uses: :class:`Change` (a value in A and in B) and
:class:`MappingDiff` (keys added, removed and changed). Pure: no I/O, standard library
only, so the run comparison (``lineage``) and the parity check before a run
(``execution``) share one definition of "the environment differs".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["Change", "EnvironmentDiff", "MappingDiff", "diff_environments"]

# Paths differ between any two virtualenvs and say nothing about results.
_PYTHON_KEYS = ("version", "implementation")
_OS_KEYS = ("system", "release", "version", "machine", "libc", "distro")
_HARDWARE_KEYS = (
    "cpu.model", "cpu.logical_cores", "cpu.physical_cores", "cpu.usable_cores",
    "memory.total_bytes",
)  # fmt: skip


@dataclass(frozen=True)
class Change:
    """A value in run A and in run B."""

    a: Any
    b: Any


@dataclass(frozen=True)
class MappingDiff:
    """Keys only in B (``added``), only in A (``removed``), and in both but different."""

    added: dict[str, Any]
    removed: dict[str, Any]
    changed: dict[str, Change]

    @classmethod
    def between(cls, a: Mapping[str, Any], b: Mapping[str, Any]) -> MappingDiff:
        """Compare two mappings key by key."""
        return cls(
            added={k: b[k] for k in sorted(b) if k not in a},
            removed={k: a[k] for k in sorted(a) if k not in b},
            changed={k: Change(a[k], b[k]) for k in sorted(a) if k in b and a[k] != b[k]},
        )

    @property
    def empty(self) -> bool:
        """Whether the mappings are equal."""
        return not (self.added or self.removed or self.changed)


@dataclass(frozen=True)
class EnvironmentDiff:
    """How two environment snapshots differ.

    Attributes:
        same: the snapshot digests are equal.
        hardware: ``cpu.model``, ``cpu.logical_cores``, ``memory.total_bytes``, ``gpu``...
        note: why the comparison is incomplete (a snapshot is missing), if it is.
    """

    same: bool
    python: dict[str, Change]
    os: dict[str, Change]
    hardware: dict[str, Change]
    packages: MappingDiff
    env_vars: MappingDiff
    note: str | None = None


def _section_changes(
    a: Mapping[str, Any], b: Mapping[str, Any], keys: tuple[str, ...]
) -> dict[str, Change]:
    return {k: Change(a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)}


def _hardware(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    facts = {}
    for key in _HARDWARE_KEYS:
        section, _, name = key.partition(".")
        facts[key] = (snapshot.get(section) or {}).get(name)
    facts["gpu"] = [f"{g.get('name')} ({g.get('memory')})" for g in snapshot.get("gpu") or [] if g]
    return facts


def _packages(snapshot: Mapping[str, Any]) -> dict[str, str]:
    return {d["name"]: d["version"] for d in snapshot.get("distributions") or []}


def diff_environments(
    a: Mapping[str, Any] | None,
    b: Mapping[str, Any] | None,
    *,
    digests: tuple[str | None, str | None] | None = None,
) -> EnvironmentDiff:
    """Compare two environment snapshots (``capture_environment`` output).

    Python is compared by version and implementation, the OS by system, release, kernel
    version, machine, libc and distribution (interpreter paths differ between any two
    virtualenvs and are left out), hardware by CPU model and core counts, memory and
    GPUs, packages by name and version. Missing snapshots compare as empty, with a
    ``note``. A key that only one snapshot records (``os.distro`` is recorded by newer
    versions) shows as a change from or to None.

    Args:
        a: the snapshot of run A, or None if it is unavailable.
        b: the snapshot of run B, or None if it is unavailable.
        digests: the snapshots' digests, when known; equal digests mean ``same``.
    """
    missing = [name for name, snap in (("A", a), ("B", b)) if snap is None]
    note = None
    if missing:
        note = f"the environment snapshot of run {' and '.join(missing)} is unavailable"
    a, b = a or {}, b or {}
    hardware_a, hardware_b = _hardware(a), _hardware(b)
    same = a == b if digests is None or None in digests else digests[0] == digests[1]
    return EnvironmentDiff(
        same=same and not missing,
        python=_section_changes(a.get("python") or {}, b.get("python") or {}, _PYTHON_KEYS),
        os=_section_changes(a.get("os") or {}, b.get("os") or {}, _OS_KEYS),
        hardware=_section_changes(hardware_a, hardware_b, tuple(hardware_a)),
        packages=MappingDiff.between(_packages(a), _packages(b)),
        env_vars=MappingDiff.between(a.get("env_vars") or {}, b.get("env_vars") or {}),
        note=note,
    )
