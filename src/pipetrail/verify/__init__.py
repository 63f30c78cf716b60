"""Verification: reproduce a recorded run and gate a pipeline on its reproducibility.

:func:`reproduce_run` re-executes a run on its recorded params, seeds and source
snapshots, without the cache, and compares every artifact and metric;
:func:`run_check` is the CI gate built on it (``pipetrail check``). This layer sits above
``lineage`` (whose run facts and environment diff it reuses) and below ``cli``.
"""

from pipetrail.verify.reproduce import Reproduction as Reproduction
from pipetrail.verify.reproduce import reproduce_run as reproduce_run
from pipetrail.verify.settings import ReproduceSettings as ReproduceSettings
from pipetrail.verify.settings import Tolerance as Tolerance

__all__ = ["ReproduceSettings", "Reproduction", "Tolerance", "reproduce_run"]
