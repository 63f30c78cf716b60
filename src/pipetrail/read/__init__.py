"""Reading the record back from Python: projects, runs, step runs, artifacts, metrics.

``pipetrail.Project.open(".")`` opens a project for reading (and for running: it is the
project class the runner uses). ``project.runs(...)`` lists :class:`Run` objects, newest
first, filtered in SQL; ``project.run("latest")`` opens one. Everything here reads
through the ledger's read model (:mod:`pipetrail.ledger.read_model`) and the store's
verified reads; nothing parses events or writes SQL. See docs/reading.md.

Layer: above ``verify`` and ``lineage``, below ``cli``.
"""

from __future__ import annotations

from pipetrail.read.project import Project as Project
from pipetrail.read.results import MetricSeries as MetricSeries
from pipetrail.read.results import WhyComponent as WhyComponent
from pipetrail.read.results import WhyResult as WhyResult
from pipetrail.read.run import Run as Run

__all__ = ["MetricSeries", "Project", "Run", "WhyComponent", "WhyResult"]
