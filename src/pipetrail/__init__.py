"""pipetrail: reproducible, auditable, traceable ML pipelines.

Write plain functions, mark them with ``@step``, wire them in a ``@pipeline``, run.
Every artifact is stored by its BLAKE3 digest, every fact lands in a hash-chained
ledger, and caching is honest.

The public API is exactly ``__all__`` (checked by tests/unit/test_public_api.py). Each
name is imported from its module on first use (PEP 562), so ``import pipetrail`` and the
import of any subpackage (``pipetrail.capture.sources`` for one) cost only what they use:
a command such as ``pipetrail --help`` does not load the runner, the ledger and the store.
"""

from __future__ import annotations

import typing as _typing

from pipetrail.core.access import install_gate as _install_gate
from pipetrail.core.lazy import lazy_exports as _lazy_exports
from pipetrail.core.run_end import install_run_end_hook as _install_run_end_hook
from pipetrail.core.version import VERSION as __version__

if _typing.TYPE_CHECKING:
    from pipetrail.core.access import AccessGate as _AccessGate
    from pipetrail.core.contract import Contract as Contract
    from pipetrail.core.graph import source as source
    from pipetrail.core.step import Step as Step
    from pipetrail.core.step import step as step
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
    from pipetrail.execution.project import Project as _Project
    from pipetrail.execution.reports import attach_report as attach_report
    from pipetrail.execution.run import Run as Run
    from pipetrail.hashing.fingerprint_types import register_fingerprint as register_fingerprint
    from pipetrail.read.project import Project as Project
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

# Where each public name lives; kept in step with the imports above by
# tests/unit/test_public_api.py.
_EXPORTS = {
    "Contract": "pipetrail.core.contract",
    "ContractViolationError": "pipetrail.errors",
    "DefinitionError": "pipetrail.errors",
    "NotFoundError": "pipetrail.errors",
    "ParamError": "pipetrail.errors",
    "Pipeline": "pipetrail.execution.pipeline",
    "PipetrailError": "pipetrail.errors",
    "Project": "pipetrail.read.project",
    "Run": "pipetrail.execution.run",
    "Step": "pipetrail.core.step",
    "StepFailedError": "pipetrail.errors",
    "attach_report": "pipetrail.execution.reports",
    "log_metric": "pipetrail.execution.metrics",
    "log_metrics": "pipetrail.execution.metrics",
    "pipeline": "pipetrail.execution.pipeline",
    "register_fingerprint": "pipetrail.hashing.fingerprint_types",
    "register_serializer": "pipetrail.store",
    "source": "pipetrail.core.graph",
    "step": "pipetrail.core.step",
}


__getattr__, __dir__ = _lazy_exports(__name__, _EXPORTS)


def _access_gate(project: _Project) -> _AccessGate:
    # The composition root: execution asks for the gate, governance holds the rule.
    from pipetrail.governance.access import ReadGate

    return ReadGate(project)


_install_gate(_access_gate)


def _run_end_alerts(project: _Project, run_id: str, status: str) -> None:
    # The composition root: the runner calls this after every run, observability sends
    # the project's alerts. A project with no ``[alerts]`` table imports nothing more.
    from pipetrail.config_tables import CONFIG_FILE, may_name

    try:
        if not may_name((project.root / CONFIG_FILE).read_bytes(), "alerts"):
            return
    except OSError:
        return
    from pipetrail.observability.alert_events import run_end_alerts

    run_end_alerts(project, run_id, status)


_install_run_end_hook(_run_end_alerts)
