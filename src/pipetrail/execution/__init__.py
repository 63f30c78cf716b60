"""Running pipelines: the coordinator, cache keys, executors and run results.

Owns: planning and running, cache decisions, crash reconciliation. Imports the layers
below it (capture, store, ledger, hashing, core); never cli.
"""

from __future__ import annotations

import typing as _typing

from pipetrail.core.lazy import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from pipetrail.execution.executors import Executor as Executor
    from pipetrail.execution.executors import InlineExecutor as InlineExecutor
    from pipetrail.execution.executors.dask_cluster import DaskExecutor as DaskExecutor
    from pipetrail.execution.executors.processes import ProcessExecutor as ProcessExecutor
    from pipetrail.execution.pipeline import Pipeline as Pipeline
    from pipetrail.execution.pipeline import pipeline as pipeline
    from pipetrail.execution.project import Project as Project
    from pipetrail.execution.run import Run as Run
    from pipetrail.execution.runner import RunOptions as RunOptions
    from pipetrail.execution.runner import run_pipeline as run_pipeline

__all__ = [
    "DaskExecutor",
    "Executor",
    "InlineExecutor",
    "Pipeline",
    "ProcessExecutor",
    "Project",
    "Run",
    "RunOptions",
    "pipeline",
    "run_pipeline",
]

# Each name is imported from its module on first use (PEP 562): importing one module of
# the package does not import the others.
__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "DaskExecutor": "pipetrail.execution.executors.dask_cluster",
        "Executor": "pipetrail.execution.executors",
        "InlineExecutor": "pipetrail.execution.executors",
        "ProcessExecutor": "pipetrail.execution.executors.processes",
        "Pipeline": "pipetrail.execution.pipeline",
        "pipeline": "pipetrail.execution.pipeline",
        "Project": "pipetrail.execution.project",
        "Run": "pipetrail.execution.run",
        "RunOptions": "pipetrail.execution.runner",
        "run_pipeline": "pipetrail.execution.runner",
    },
)
