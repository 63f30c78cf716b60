"""Verification: reproduce a recorded run and gate a pipeline on its reproducibility.

:func:`reproduce_run` re-executes a run on its recorded params, seeds and source
snapshots, without the cache, and compares every artifact and metric;
:func:`run_check` is the CI gate built on it (``pipetrail check``). This layer sits above
``lineage`` (whose run facts and environment diff it reuses) and below ``cli``.

The names below are loaded on first use (:mod:`pipetrail.core.lazy`): a command that
needs one module of this package (``audit bundle`` needs :mod:`pipetrail.verify.bundle`)
does not import the runner that reproducing needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipetrail.core.lazy import lazy_exports

if TYPE_CHECKING:
    from pipetrail.verify.reproduce import Reproduction as Reproduction
    from pipetrail.verify.reproduce import reproduce_run as reproduce_run
    from pipetrail.verify.settings import ReproduceSettings as ReproduceSettings
    from pipetrail.verify.settings import Tolerance as Tolerance

__all__ = ["ReproduceSettings", "Reproduction", "Tolerance", "reproduce_run"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Reproduction": "pipetrail.verify.reproduce",
        "reproduce_run": "pipetrail.verify.reproduce",
        "ReproduceSettings": "pipetrail.verify.settings",
        "Tolerance": "pipetrail.verify.settings",
    },
)
