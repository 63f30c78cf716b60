"""Checking a step's contracts while it executes (the task side of contracts).

:class:`ContractChecker` is what :func:`~pipetrail.execution.task.execute_task` uses:
input contracts are checked on the loaded values before the step function is called,
output contracts on the returned values before anything is stored, so a violation fails
the step with nothing of its outputs stored and before anything downstream runs. When
the step has contracts, every result (passes included) becomes a JSON report stored in
the content store, and a summary for the step event; a violation becomes the step's
error, a :class:`~pipetrail.errors.ContractViolationError`. Writes blobs only, never the
ledger, so it runs on any executor.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from pipetrail.contracts import (
    REPORT_FORMAT,
    BoundaryResult,
    CheckResult,
    check_boundary,
    describe_violations,
)
from pipetrail.errors import ContractViolationError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pipetrail.core.contract import Boundary
    from pipetrail.execution.task import StepTask, TaskResult
    from pipetrail.store import ContentStore, SerializerRegistry, StoredArtifact
    from pipetrail.store.sealed import SealingKeys

__all__ = ["ContractChecker"]

_log = logging.getLogger(__name__)


class ContractChecker:
    """Checks one task's input and output contracts and reports on them.

    Not thread-safe; one per task execution.
    """

    def __init__(self, task: StepTask) -> None:
        self.task = task
        self.results: list[BoundaryResult] = []

    def _check(self, boundary: Boundary, value: Any, artifact: str | None) -> bool:
        fingerprint = self.task.contract_fingerprints.get(boundary.label, "")
        try:
            found = check_boundary(boundary, value, fingerprint=fingerprint, artifact=artifact)
        except Exception as exc:  # noqa: BLE001 - schema libraries and custom checks may raise
            found = BoundaryResult(
                boundary.direction, boundary.name, boundary.contract.kind, fingerprint, artifact
            )
            found.checks = [
                CheckResult(
                    "validation",
                    status="failed",
                    failures=1,
                    message=f"checking the contract raised {type(exc).__name__}: {exc}",
                )
            ]
        self.results.append(found)
        return found.ok

    def inputs_hold(self, kwargs: Mapping[str, Any]) -> bool:
        """Check every input contract; False when any is violated (all are checked)."""
        held = True
        for boundary in self.task.contracts:
            if boundary.direction == "input":
                digest = self.task.input_digests.get(boundary.name)
                held = self._check(boundary, kwargs.get(boundary.name), digest) and held
        return held

    def outputs_hold(self, values: Mapping[str, Any]) -> bool:
        """Check every output contract; False when any is violated (all are checked)."""
        held = True
        for boundary in self.task.contracts:
            if boundary.direction == "output":
                held = self._check(boundary, values.get(boundary.name), None) and held
        return held

    def finish(
        self,
        result: TaskResult,
        store: ContentStore,
        registry: SerializerRegistry,
        outputs: Mapping[str, StoredArtifact] | None = None,
    ) -> None:
        """Store the report, summarize it in ``result`` and turn a violation into its error.

        Args:
            result: the task's result; ``contracts``, ``contract_report`` and, on a
                violation, ``error`` are set.
            store: where the report is stored.
            registry: serializers (the report is stored as JSON).
            outputs: the stored outputs, whose digests the output results then name.
        """
        if not self.task.contracts:
            return
        for found in self.results:
            if found.direction == "output" and outputs and found.name in outputs:
                found.artifact = outputs[found.name].digest
        ok = all(found.ok for found in self.results)
        boundaries = [found.to_record() for found in self.results]
        report = {
            "format": REPORT_FORMAT,
            "step": self.task.node_id,
            "step_name": self.task.step_name,
            "ok": ok,
            "boundaries": boundaries,
        }
        stored: StoredArtifact | None = None
        privacy = self.task.privacy
        try:
            if privacy is not None and privacy.handles and privacy.keys is not None:
                stored = _sealed_report(report, store, registry, privacy.keys, privacy.handles)
            else:
                stored = registry.by_name("json").dump(report, store)
        except Exception as exc:  # noqa: BLE001 - store backends may raise library errors
            _log.warning("step %r: storing its contract report failed: %s", self.task.node_id, exc)
        result.contract_report = stored
        if privacy is not None and privacy.handles:
            # The report (sealed) keeps the failing values; the step event and the error,
            # which are stored in clear, keep only which checks failed and how often.
            self.results = [_redacted(found) for found in self.results]
            boundaries = [found.to_record() for found in self.results]
            report = {**report, "boundaries": boundaries}
        result.contracts = {
            "ok": ok,
            "report": None if stored is None else stored.digest,
            "boundaries": boundaries,
        }
        if not ok and result.error is None:
            message = describe_violations(self.task.node_id, self.results)
            if privacy is not None and privacy.handles:
                where = "" if stored is None else f"; the sealed report {stored.digest} has them"
                message += f" (values not shown: the step handles {privacy.handles} data{where})"
            result.error = ContractViolationError(
                message,
                step=self.task.node_id,
                report=report,
                report_digest=None if stored is None else stored.digest,
            )
            result.traceback = ""


def _sealed_report(
    report: dict[str, Any],
    store: ContentStore,
    registry: SerializerRegistry,
    keys: SealingKeys,
    label: str,
) -> StoredArtifact:
    """Store a contract report sealed, under a keyed digest and ``label``."""
    from pipetrail.execution.classification import seal_record
    from pipetrail.store.sealed import SealedStore

    sealed = SealedStore(store, keys)
    return seal_record(registry.by_name("json").dump(report, sealed), sealed, label)


def _redacted(found: BoundaryResult) -> BoundaryResult:
    """A boundary's results without any checked value: no examples, no failure messages."""
    copy = dataclasses.replace(found, checks=[dataclasses.replace(c) for c in found.checks])
    for check in copy.checks:
        check.examples = []
        if check.status == "failed":
            check.message = None
    return copy
