"""pipetrail: reproducible, auditable, traceable ML pipelines.

Write plain functions, mark them with ``@step``, wire them in a ``@pipeline``, run.
Every artifact is stored by its BLAKE3 digest, every fact lands in a hash-chained
ledger, and caching is honest.

The public API is exactly ``__all__`` (checked by tests/unit/test_public_api.py).
"""

from __future__ import annotations

from pipetrail.core.contract import Contract as Contract
from pipetrail.core.graph import source as source
from pipetrail.core.step import Step as Step
from pipetrail.core.step import step as step
from pipetrail.core.version import VERSION as __version__
from pipetrail.errors import ContractViolationError as ContractViolationError
from pipetrail.errors import DefinitionError as DefinitionError
from pipetrail.errors import NotFoundError as NotFoundError
from pipetrail.errors import ParamError as ParamError
from pipetrail.errors import PipetrailError as PipetrailError
from pipetrail.errors import StepFailedError as StepFailedError
from pipetrail.execution.metrics import log_metric as log_metric
from pipetrail.execution.metrics import log_metrics as log_metrics
from pipetrail.execution.pipeline import Pipeline as Pipeline
from pipetrail.execution.pipeline import pipeline as pipeline
from pipetrail.execution.project import Project as Project
from pipetrail.execution.reports import attach_report as attach_report
from pipetrail.execution.run import Run as Run
from pipetrail.hashing.fingerprint_types import register_fingerprint as register_fingerprint
from pipetrail.store import register_serializer as register_serializer

__all__ = [
    "Contract",
    "ContractViolationError",
    "DefinitionError",
    "NotFoundError",
    "ParamError",
    "Pipeline",
    "PipetrailError",
    "Project",
    "Run",
    "Step",
    "StepFailedError",
    "__version__",
    "attach_report",
    "log_metric",
    "log_metrics",
    "pipeline",
    "register_fingerprint",
    "register_serializer",
    "source",
    "step",
]
