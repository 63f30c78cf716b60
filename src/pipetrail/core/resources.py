"""What a step asks for to run: CPUs, memory and GPUs (``@step(resources=...)``).

A request is declared with the step (or for every step that declares none, by
``with_options(resources=...)``) and normalized here, at definition time, so a typo or a
unit pipetrail does not know is refused before anything runs:

* ``cpu``: CPUs, a number above 0 (``0.5`` is half of one);
* ``memory``: bytes, a whole number or text with a unit: ``"512MiB"``, ``"4GiB"``,
  ``"2GB"`` (``B``, ``KB``/``MB``/``GB``/``TB`` in powers of 1000, ``KiB``/``MiB``/``GiB``/
  ``TiB`` in powers of 1024);
* ``gpu``: GPUs, a whole number >= 0.

A request is what executors schedule by (the ``dask`` executor as Dask worker
resources, the ``processes`` executor by admission against its pool's capacity); it is
recorded with the step run, next to what the step used, and is not part of the cache
key: the same computation asking for more memory produces the same outputs. Pure: no I/O.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from pipetrail.errors import DefinitionError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["RESOURCE_KEYS", "Resources", "parse_memory", "parse_resources", "resources_dict"]

#: The resources a step may request.
RESOURCE_KEYS = ("cpu", "memory", "gpu")

#: A normalized request: ``(key, amount)`` pairs sorted by key, none zero.
Resources = tuple[tuple[str, float], ...]

_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*$")


def parse_memory(value: object) -> int | None:
    """Bytes for ``4294967296``, ``"4GiB"``, ``"512 MB"``; None when it is not a size."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value > 0 else None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value >= 1 else None
    if not isinstance(value, str):
        return None
    found = _SIZE_RE.match(value)
    if found is None:
        return None
    unit = _UNITS.get(found.group(2).lower() or "b")
    if unit is None:
        return None
    amount = int(float(found.group(1)) * unit)
    return amount if amount > 0 else None


def parse_resources(owner: str, value: Mapping[str, Any] | None) -> Resources:
    """Normalize a resource request; ``owner`` names it in messages (``step 'train'``).

    Returns:
        ``(key, amount)`` pairs sorted by key; memory in bytes, a GPU count of 0 dropped.

    Raises:
        DefinitionError: not a mapping, an unknown key, or an amount that is not valid
            for its key (names the owner, the key and what is expected).
    """
    if value is None:
        return ()
    if not hasattr(value, "items"):
        raise DefinitionError(
            f"{owner}: resources must be a mapping such as "
            f'{{"cpu": 2, "memory": "4GiB", "gpu": 1}}, got {value!r}'
        )
    found: dict[str, float] = {}
    for key, amount in value.items():
        if key not in RESOURCE_KEYS:
            raise DefinitionError(
                f"{owner}: unknown resource {key!r}; a step may request "
                f'{", ".join(RESOURCE_KEYS)} (e.g. {{"cpu": 2, "memory": "4GiB"}})'
            )
        found[key] = _amount(owner, key, amount)
    return tuple(sorted((k, v) for k, v in found.items() if not (k == "gpu" and v == 0)))


def _amount(owner: str, key: str, amount: object) -> float:
    if key == "memory":
        size = parse_memory(amount)
        if size is None:
            raise DefinitionError(
                f'{owner}: resource \'memory\' must be a size such as "4GiB", "512MiB", '
                f'"2GB" or a whole number of bytes, got {amount!r}'
            )
        return size
    number = amount if isinstance(amount, int | float) and not isinstance(amount, bool) else None
    if key == "gpu":
        if not isinstance(number, int) or number < 0:
            raise DefinitionError(
                f"{owner}: resource 'gpu' must be a whole number of GPUs >= 0, got {amount!r}"
            )
        return number
    if number is None or not math.isfinite(number) or number <= 0:
        raise DefinitionError(
            f"{owner}: resource 'cpu' must be a number of CPUs above 0 (0.5, 2), got {amount!r}"
        )
    return number


def resources_dict(resources: Resources) -> dict[str, float]:
    """A request as a JSON-able dict (whole amounts as ints), as step events record it."""
    return {k: int(v) if float(v).is_integer() else v for k, v in resources}
