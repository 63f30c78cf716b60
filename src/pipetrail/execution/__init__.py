"""Running pipelines: the coordinator, cache keys, executors and run results.

Owns: planning and running, cache decisions, crash reconciliation. Imports the layers
below it (capture, store, ledger, hashing, core); never cli.
"""

from __future__ import annotations

from pipetrail.execution.executors import Executor as Executor
from pipetrail.execution.executors import InlineExecutor as InlineExecutor
from pipetrail.execution.pipeline import Pipeline as Pipeline
from pipetrail.execution.pipeline import pipeline as pipeline
from pipetrail.execution.project import Project as Project
from pipetrail.execution.run import Run as Run
from pipetrail.execution.runner import RunOptions as RunOptions
from pipetrail.execution.runner import run_pipeline as run_pipeline

__all__ = [
    "Executor",
    "InlineExecutor",
    "Pipeline",
    "Project",
    "Run",
    "RunOptions",
    "pipeline",
    "run_pipeline",
]
