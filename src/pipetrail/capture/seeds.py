"""Seeds: validating, deriving and applying the random seeds a run records.

Owns the seed range (``0 .. 2**32 - 1``, what ``numpy.random.seed`` accepts), the
derivation of per-step seeds from a run seed, and seeding the global generators of
``random``, NumPy and PyTorch. Imports only ``pipetrail.hashing``, ``pipetrail.errors``,
``blake3`` and the standard library; NumPy and PyTorch are imported only when seeding.
"""

from __future__ import annotations

import logging
import operator
import os
import random
import sys
from typing import Any

from blake3 import blake3

from pipetrail.errors import ParamError
from pipetrail.hashing import canonical_bytes

__all__ = ["MAX_SEED", "apply_seed", "derive_seed", "new_run_seed", "validate_seed"]

_log = logging.getLogger(__name__)

MAX_SEED = 2**32 - 1
# Part of every derived seed's hashed bytes: changing it changes every derived seed.
_DERIVATION_TAG = "pipetrail.derive_seed/1"


def validate_seed(value: Any) -> int:
    """Return ``value`` as a seed, or raise if it is not an integer in range.

    Integer-like values (such as ``numpy.int64``) are accepted; ``bool``, floats and
    strings are not, so that ``True`` or ``"42"`` never silently become seeds.

    Raises:
        ParamError: if ``value`` is not an integer between 0 and 4294967295.
    """
    if not isinstance(value, bool):
        try:
            seed = operator.index(value)
        except TypeError:
            pass
        else:
            if 0 <= seed <= MAX_SEED:
                return seed
    raise ParamError(
        f"seed must be an integer between 0 and {MAX_SEED}, got {value!r} "
        f"({type(value).__name__}); pass a whole number in that range"
    )


def derive_seed(run_seed: int, key: str) -> int:
    """Return the seed for ``key`` (a step name, a fold) derived from a run seed.

    The result is the first 4 bytes, big-endian, of the BLAKE3 digest of the canonical
    bytes of ``["pipetrail.derive_seed/1", run_seed, key]``. It is the same on every
    machine and Python version, uniform over ``0 .. 2**32 - 1``, and different keys give
    independent-looking seeds, so adding a step never shifts the seeds of others.

    Raises:
        ParamError: if ``run_seed`` is out of range or ``key`` is not a string.
    """
    seed = validate_seed(run_seed)
    if not isinstance(key, str):
        raise ParamError(
            f"seed derivation key must be a string (a step name), got {type(key).__name__}"
        )
    digest = blake3(canonical_bytes([_DERIVATION_TAG, seed, key])).digest()
    return int.from_bytes(digest[:4], "big")


def new_run_seed() -> int:
    """Return a fresh random seed from the operating system's entropy source."""
    return int.from_bytes(os.urandom(4), "big")


def apply_seed(seed: int) -> list[str]:
    """Seed the global generators of ``random``, NumPy and PyTorch with ``seed``.

    NumPy and PyTorch are seeded when they are already imported, which is the case for
    any step whose module imports them at the top. They are never imported here:
    importing PyTorch takes a second or more, a cost no run of a pipeline that does not
    use it should pay. A step that imports one of them inside its body should seed it
    itself (its derived seed is recorded with the step run).

    Returns:
        The names of the libraries seeded, in order (``["random", "numpy"]``).

    Raises:
        ParamError: if ``seed`` is out of range.
    """
    seed = validate_seed(seed)
    random.seed(seed)
    seeded = ["random"]
    numpy = sys.modules.get("numpy")
    if numpy is not None and hasattr(numpy, "random"):
        numpy.random.seed(seed)
        seeded.append("numpy")
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "manual_seed"):
        # Also seeds every CUDA device.
        torch.manual_seed(seed)
        seeded.append("torch")
    return seeded
