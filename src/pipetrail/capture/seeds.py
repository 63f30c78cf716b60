"""Seeds: validating, deriving and applying the random seeds a run records.

Owns the seed range (``0 .. 2**32 - 1``, what ``numpy.random.seed`` accepts), the
derivation of per-step seeds from a run seed, and seeding the global generators of
``random``, NumPy and PyTorch: for good (:func:`apply_seed`) or for one block, after
which their states are put back (:func:`seeded`, what a step runs in). Imports only
``pipetrail.hashing``, ``pipetrail.errors``, ``blake3`` and the standard library; NumPy
and PyTorch are imported only when seeding.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import operator
import os
import random
import sys
import threading
from typing import TYPE_CHECKING, Any

from blake3 import blake3

from pipetrail.errors import ParamError
from pipetrail.hashing.canonical import plain_canonical_bytes

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType

__all__ = [
    "MAX_SEED", "apply_seed", "derive_seed", "held_states", "new_run_seed", "seeded",
    "validate_seed",
]  # fmt: skip

_log = logging.getLogger(__name__)

MAX_SEED = 2**32 - 1
# Part of every derived seed's hashed bytes: changing it changes every derived seed.
_DERIVATION_TAG = "pipetrail.derive_seed/1"
# (run seed, key) -> derived seed: a process running a pipeline again (a sweep, a
# notebook) derives each step's seed once. Bounded: emptied when full.
_DERIVED: dict[tuple[int, str], int] = {}
_DERIVED_MAX = 1 << 16


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
    if type(run_seed) is int and 0 <= run_seed <= MAX_SEED:
        seed = run_seed  # what validate_seed returns for it, without the call
    else:
        seed = validate_seed(run_seed)
    if not isinstance(key, str):
        raise ParamError(
            f"seed derivation key must be a string (a step name), got {type(key).__name__}"
        )
    found = _DERIVED.get((seed, key))
    if found is None:
        # A string and an integer in range: plain, so encoded without a walk (a key
        # orjson refuses, a str subclass, takes the reference encoder there).
        digest = blake3(plain_canonical_bytes([_DERIVATION_TAG, seed, key])).digest()
        found = int.from_bytes(digest[:4], "big")
        if len(_DERIVED) >= _DERIVED_MAX:
            _DERIVED.clear()
        _DERIVED[(seed, key)] = found
    return found


def new_run_seed() -> int:
    """Return a fresh random seed from the operating system's entropy source."""
    return int.from_bytes(os.urandom(4), "big")


SEEDABLE_LIBRARIES = ("numpy", "torch")


def apply_seed(seed: int, *, uses: Iterable[str] = ()) -> list[str]:
    """Seed the global generators of ``random``, NumPy and PyTorch with ``seed``.

    NumPy and PyTorch are seeded when they are already imported, or when ``uses`` names
    them (the step's code refers to them, for instance with an ``import torch`` inside
    its body) and they are installed: they are imported here first, which the step was
    about to do anyway. A library neither imported nor used is left alone, so no run
    pays PyTorch's second-long import for a pipeline that does not need it.

    Args:
        seed: the seed.
        uses: distribution names the code about to run refers to.

    Returns:
        The names of the libraries seeded, in order (``["random", "numpy"]``).

    Raises:
        ParamError: if ``seed`` is out of range.
    """
    return _apply_seed(validate_seed(seed), set(uses))


def _apply_seed(seed: int, wanted: set[str]) -> list[str]:
    """:func:`apply_seed` of a seed already validated, ``uses`` as a set."""
    random.seed(seed)
    seeded = ["random"]
    for name in SEEDABLE_LIBRARIES:
        module = sys.modules.get(name)
        if module is None and name in wanted:
            module = _import_installed(name)
        if module is None:
            continue
        if name == "numpy" and hasattr(module, "random"):
            module.random.seed(seed)
            seeded.append(name)
        elif name == "torch" and hasattr(module, "manual_seed"):
            module.manual_seed(seed)  # also seeds every CUDA device
            seeded.append(name)
    return seeded


class seeded:
    """Seed the global generators for a block, then put back the states they had.

    The generators are those :func:`apply_seed` seeds. Their states are saved before
    seeding (a library ``uses`` names is imported first, so its fresh state is the one
    kept) and restored when the block exits, also by an exception, so the caller's
    random sequences go on as if the block had not run. A library first imported
    inside the block has no earlier state and is left as the block left it.

    Args:
        seed: the seed.
        uses: distribution names the code about to run refers to.

    Entering the block gives the names of the libraries seeded (as :func:`apply_seed`
    returns them).

    Raises:
        ParamError: if ``seed`` is out of range (on entering the block).

    Inside a run that keeps the states (:class:`held_states`, in the same thread) the
    block saves only what the run does not keep yet, and the run puts the states back
    when it ends.

    A class rather than a generator: every executed step enters one.
    """

    __slots__ = ("_saved", "_seed", "_uses")

    def __init__(self, seed: int, *, uses: Iterable[str] = ()) -> None:
        self._seed = seed
        self._uses = uses
        self._saved: list[tuple[str, Any, Any]] | None = None

    def __enter__(self) -> list[str]:
        seed = validate_seed(self._seed)
        wanted = set(self._uses)
        holds = _HOLDS.get(threading.get_ident())
        if holds:
            # A run in this thread keeps the states until it ends (held_states): only a
            # library not held yet has its state saved, into the run's hold, and the
            # block puts nothing back itself.
            held = holds[-1]
            held.extend(_save_states(wanted, skip={name for name, _, _ in held}))
            return _apply_seed(seed, wanted)
        self._saved = _save_states(wanted)
        try:
            return _apply_seed(seed, wanted)
        except BaseException:
            saved, self._saved = self._saved, None
            _restore_states(saved)
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        saved, self._saved = self._saved, None
        if saved is not None:
            _restore_states(saved)


def _save_states(
    wanted: set[str], skip: set[str] | frozenset[str] = frozenset()
) -> list[tuple[str, Any, Any]]:
    """Return ``(name, module, state)`` of each generator :func:`apply_seed` would seed.

    Generators named in ``skip`` are left out (their states are kept already).
    """
    states: list[tuple[str, Any, Any]] = []
    if "random" not in skip:
        states.append(("random", random, random.getstate()))
    for name in SEEDABLE_LIBRARIES:
        if name in skip:
            continue
        module = sys.modules.get(name)
        if module is None and name in wanted:
            module = _import_installed(name)
        if module is None:
            continue
        if name == "numpy" and hasattr(module, "random"):
            states.append((name, module, module.random.get_state()))
        elif name == "torch" and hasattr(module, "get_rng_state"):
            cuda: Any = getattr(module, "cuda", None)
            gpu_states = None
            # Reading CUDA states initializes CUDA: only when the process already did.
            if cuda is not None and cuda.is_available() and cuda.is_initialized():
                gpu_states = cuda.get_rng_state_all()
            states.append((name, module, (module.get_rng_state(), gpu_states)))
    return states


# thread -> the states each run in progress in it keeps, innermost last (held_states).
_HOLDS: dict[int, list[list[tuple[str, Any, Any]]]] = {}


class held_states:
    """Keep the generators' states for a run, put back when it ends, not after each step.

    Each step executed in the run's thread is still seeded at its start (:class:`seeded`)
    and nothing but pipetrail's own code runs between two of them, so saving and
    putting back ``random``'s 625-number state around every step (about 100,000
    instructions a step) gives the caller nothing that saving it once when the run
    starts and putting it back when it ends does not: the caller's random sequences go
    on as if the run had not happened, also when it fails. A library a step imports has
    its fresh state saved when a block first seeds it (as :class:`seeded` keeps it) and
    put back at the end as well. Runs nest: a run started inside a step keeps, and puts
    back, the states that step's code was using. Blocks in other threads save and
    restore their own states as before.
    """

    __slots__ = ("_thread",)

    def __init__(self) -> None:
        self._thread = 0

    def __enter__(self) -> None:
        self._thread = threading.get_ident()
        _HOLDS.setdefault(self._thread, []).append(_save_states(set()))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        holds = _HOLDS[self._thread]
        held = holds.pop()
        if not holds:
            del _HOLDS[self._thread]
        _restore_states(held)


def _restore_states(states: list[tuple[str, Any, Any]]) -> None:
    for name, module, state in states:
        try:
            if name == "random":
                module.setstate(state)
            elif name == "numpy":
                module.random.set_state(state)
            else:
                cpu, gpu = state
                module.set_rng_state(cpu)
                if gpu is not None:
                    module.cuda.set_rng_state_all(gpu)
        except Exception as exc:  # noqa: BLE001 - a library's own error; the step is over
            _log.warning("could not restore the random state of %s: %s", name, exc)


def _import_installed(name: str) -> Any:
    """Import ``name`` if it is installed; None when missing or broken."""
    try:
        if importlib.util.find_spec(name) is None:
            return None
        return importlib.import_module(name)
    except ImportError as exc:
        # Installed but broken (a missing shared library, say): it cannot be seeded, and
        # the step using it will report the same import error itself.
        _log.warning("could not import %s to seed it: %s", name, exc)
        return None
