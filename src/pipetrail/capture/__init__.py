"""Capture: the facts a run records about where and how it ran.

Owns environment snapshots (interpreter, OS, hardware, installed packages) and their
comparison (``environment_diff``), git state (commit, branch, uncommitted diff),
resource usage of a block (time, CPU, peak memory),
seeds (validation, derivation, seeding libraries), output capture (stdout, stderr and
logging in one log) and run ownership (owner, host, process liveness).

Imports only ``pipetrail.core``, ``pipetrail.hashing``, ``pipetrail.errors`` and
third-party or standard-library modules; never ``store``, ``ledger``, ``execution`` or
``cli``.
"""

from __future__ import annotations

import typing as _typing

from pipetrail.core.lazy import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from pipetrail.capture.distributions import list_distributions as list_distributions
    from pipetrail.capture.environment import capture_environment as capture_environment
    from pipetrail.capture.environment import environment_digest as environment_digest
    from pipetrail.capture.git import GitState as GitState
    from pipetrail.capture.git import capture_git as capture_git
    from pipetrail.capture.output import CapturedOutput as CapturedOutput
    from pipetrail.capture.output import OutputCapture as OutputCapture
    from pipetrail.capture.output import capture_output as capture_output
    from pipetrail.capture.owner import current_host as current_host
    from pipetrail.capture.owner import current_owner as current_owner
    from pipetrail.capture.owner import identity_is_alive as identity_is_alive
    from pipetrail.capture.owner import process_identity as process_identity
    from pipetrail.capture.owner import process_is_alive as process_is_alive
    from pipetrail.capture.owner import process_start_time as process_start_time
    from pipetrail.capture.resources import Measurement as Measurement
    from pipetrail.capture.resources import ResourceUsage as ResourceUsage
    from pipetrail.capture.resources import measure as measure
    from pipetrail.capture.seeds import MAX_SEED as MAX_SEED
    from pipetrail.capture.seeds import apply_seed as apply_seed
    from pipetrail.capture.seeds import derive_seed as derive_seed
    from pipetrail.capture.seeds import new_run_seed as new_run_seed
    from pipetrail.capture.seeds import seeded as seeded
    from pipetrail.capture.seeds import validate_seed as validate_seed
    from pipetrail.capture.source_checks import SourceChangedError as SourceChangedError
    from pipetrail.capture.sources import SourceObservation as SourceObservation
    from pipetrail.capture.sources import observe_source as observe_source
    from pipetrail.capture.statcache import StatCache as StatCache

__all__ = [
    "CapturedOutput",
    "GitState",
    "MAX_SEED",
    "Measurement",
    "OutputCapture",
    "ResourceUsage",
    "SourceChangedError",
    "SourceObservation",
    "StatCache",
    "apply_seed",
    "capture_environment",
    "capture_git",
    "capture_output",
    "current_host",
    "current_owner",
    "derive_seed",
    "environment_digest",
    "identity_is_alive",
    "list_distributions",
    "measure",
    "new_run_seed",
    "observe_source",
    "process_identity",
    "process_is_alive",
    "process_start_time",
    "seeded",
    "validate_seed",
]

# Each name is imported from its module on first use (PEP 562): importing one module of
# the package does not import the others.
__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "capture_environment": "pipetrail.capture.environment",
        "environment_digest": "pipetrail.capture.environment",
        "list_distributions": "pipetrail.capture.distributions",
        "GitState": "pipetrail.capture.git",
        "capture_git": "pipetrail.capture.git",
        "CapturedOutput": "pipetrail.capture.output",
        "OutputCapture": "pipetrail.capture.output",
        "capture_output": "pipetrail.capture.output",
        "current_host": "pipetrail.capture.owner",
        "current_owner": "pipetrail.capture.owner",
        "identity_is_alive": "pipetrail.capture.owner",
        "process_identity": "pipetrail.capture.owner",
        "process_is_alive": "pipetrail.capture.owner",
        "process_start_time": "pipetrail.capture.owner",
        "Measurement": "pipetrail.capture.resources",
        "ResourceUsage": "pipetrail.capture.resources",
        "measure": "pipetrail.capture.resources",
        "MAX_SEED": "pipetrail.capture.seeds",
        "apply_seed": "pipetrail.capture.seeds",
        "derive_seed": "pipetrail.capture.seeds",
        "new_run_seed": "pipetrail.capture.seeds",
        "seeded": "pipetrail.capture.seeds",
        "validate_seed": "pipetrail.capture.seeds",
        "SourceChangedError": "pipetrail.capture.source_checks",
        "SourceObservation": "pipetrail.capture.sources",
        "observe_source": "pipetrail.capture.sources",
        "StatCache": "pipetrail.capture.statcache",
    },
)
