"""What a pool of workers can give steps: its capacity, and whether a request fits.

A step's request (``@step(resources=...)``, see :mod:`pipetrail.core.resources`) is
honoured by the concurrent executors:

* ``processes``: by admission. The pool's capacity is ``[executor.resources]`` in
  ``pipetrail.toml`` (``cpu``, ``memory``, ``gpu``), else the machine's: ``cpu`` as many as
  the CPUs, or the workers when there are more, ``memory`` the physical memory, ``gpu``
  none. Steps start only while the requests of the steps executing, summed, fit in it;
  a step that declares nothing counts as one CPU. A step asking for more than the whole
  capacity is refused at once (:class:`~pipetrail.errors.ResourceError`).
* ``dask``: as Dask worker resources named ``cpu``, ``memory`` and ``gpu``. The workers
  of a local cluster made by pipetrail each declare ``[executor.resources]``, else their
  share of the machine (``cpu`` and ``memory`` divided by the workers, no ``gpu``);
  workers of a cluster you run declare theirs with ``dask worker --resources "cpu=4
  memory=17179869184 gpu=1"``. A step no worker can satisfy is refused before it is
  submitted, instead of waiting for ever.

Imports only the standard library and pipetrail's core.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pipetrail.core.resources import parse_resources, resources_dict
from pipetrail.errors import DefinitionError, ProjectError, ResourceError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pipetrail.execution.task import TaskResult

__all__ = [
    "configured_capacity",
    "describe",
    "machine_capacity",
    "memory_bytes",
    "refused",
    "shortfall",
]


def memory_bytes() -> int | None:
    """The machine's physical memory, or None where it cannot be read."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        return None


def machine_capacity(workers: int) -> dict[str, float]:
    """The default capacity of a local pool of ``workers`` processes."""
    capacity: dict[str, float] = {"cpu": float(max(os.cpu_count() or 1, workers)), "gpu": 0.0}
    memory = memory_bytes()
    if memory is not None:
        capacity["memory"] = float(memory)
    return capacity


def configured_capacity(value: Mapping[str, Any] | None) -> dict[str, float]:
    """``[executor.resources]`` (or an executor's ``resources=`` argument), normalized.

    Raises:
        ProjectError: an unknown resource or a bad amount (names the table and the key).
    """
    try:
        return dict(parse_resources("[executor.resources]", value))
    except DefinitionError as exc:
        raise ProjectError(f"{exc}; fix pipetrail.toml or the executor's resources") from None


def describe(amounts: Mapping[str, float]) -> str:
    """``cpu 2, memory 4.0 GiB`` for messages."""
    parts = []
    for key, value in sorted(resources_dict(tuple(amounts.items())).items()):
        if key == "memory":
            parts.append(f"memory {value / 1024**3:.1f} GiB")
        else:
            parts.append(f"{key} {value:g}")
    return ", ".join(parts) or "nothing"


def shortfall(requested: Mapping[str, float], available: Mapping[str, float]) -> list[str]:
    """The requested resources ``available`` does not cover (``["gpu 1 (has 0)"]``)."""
    missing = []
    for key, amount in sorted(requested.items()):
        has = available.get(key, 0.0)
        if amount > has:
            shown = f"{amount / 1024**3:.1f} GiB" if key == "memory" else f"{amount:g}"
            had = f"{has / 1024**3:.1f} GiB" if key == "memory" else f"{has:g}"
            missing.append(f"{key} {shown} (has {had})")
    return missing


def refused(step: str, message: str) -> TaskResult:
    """A step's result when the executor cannot give it what it requests."""
    from pipetrail.execution.task import TaskResult

    error = ResourceError(f"step {step!r} cannot run: {message}")
    return TaskResult(error=error, traceback=f"ResourceError: {error}\n")
