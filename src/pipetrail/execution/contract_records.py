"""Contracts in the run record: fingerprints for cache keys, payloads, and reading back.

The runner asks :func:`plan_contracts` once per step for the fingerprint of each of its
contracts. They become the ``contracts`` component of the step's cache key (boundary label
-> digest, so ``pipetrail why`` names the boundary whose contract changed), the
``contracts`` field of ``run.started`` (node id -> the same mapping) and part of every step
event:

* ``step.completed`` / ``step.failed``: ``contracts`` is ``{"ok", "report", "boundaries"}``
  where ``report`` is the digest of the stored contract report (role
  ``contract-report``) and ``boundaries`` lists each boundary with its contract
  fingerprint, artifact digest and every check with its status (see
  :class:`~pipetrail.contracts.BoundaryResult`);
* ``step.cached``: ``contracts`` is ``{"fingerprints", "reused_step_run_id"}``: a hit
  checked nothing; the results are those of the step run it reuses, whose key covered
  the same input digests and contract fingerprints.

Steps without contracts record none of these fields, so their keys and events are as
before. :func:`contract_results` reads it all back for ``pipetrail contracts`` and
``pipetrail show``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.errors import ContractViolationError, StepFailedError

if TYPE_CHECKING:
    from pipetrail.core.contract import Boundary
    from pipetrail.core.step import Step
    from pipetrail.ledger import Reader

__all__ = [
    "REPORT_ROLE",
    "StepContracts",
    "cached_payload",
    "contract_results",
    "plan_contracts",
    "register_contract_fingerprints",
    "run_contracts",
    "step_failure",
]

REPORT_ROLE = "contract-report"


@dataclass(frozen=True)
class StepContracts:
    """A step's contracts and their fingerprints, computed once per run.

    Attributes:
        boundaries: where each contract applies.
        fingerprints: boundary label (``input:df``, ``output:output``) -> contract digest.
        unhashable: reasons a contract could not be fingerprinted (forces a cache miss).
    """

    boundaries: tuple[Boundary, ...]
    fingerprints: dict[str, str]
    unhashable: tuple[str, ...]


# Modules whose objects only pipetrail.contracts.fingerprint knows how to fingerprint
# (it registers their handlers when imported): pandera's schemas and checks, and
# pipetrail's own Contract.
_FINGERPRINTED_BY_CONTRACTS = ("pandera", "pipetrail.core.contract")


def register_contract_fingerprints() -> None:
    """Make the fingerprints of schemas and contracts known before code is fingerprinted.

    A step's code may read a pandera schema or a :class:`~pipetrail.core.contract.Contract`
    (a global its body calls) without declaring a contract: its fingerprint then needs
    the handlers :mod:`pipetrail.contracts.fingerprint` registers, or the step would be
    refused the cache on every run ("no fingerprint is registered"). Such an object
    exists only once its module is loaded, so the fingerprinting is imported only then.
    """
    if "pipetrail.contracts.fingerprint" in sys.modules:
        return
    if any(name in sys.modules for name in _FINGERPRINTED_BY_CONTRACTS):
        import pipetrail.contracts.fingerprint  # noqa: F401  (registers the handlers)


def plan_contracts(step: Step[..., Any]) -> StepContracts | None:
    """Fingerprint a step's contracts; None when it declares none."""
    boundaries = step.options.contracts
    if not boundaries:
        return None
    # Imported here: most steps declare no contract, and a run of such steps never loads
    # the fingerprinting (nor what it imports).
    from pipetrail.contracts import fingerprint_contract

    fingerprints: dict[str, str] = {}
    unhashable: list[str] = []
    for boundary in boundaries:
        found = fingerprint_contract(boundary.contract)
        fingerprints[boundary.label] = found.digest
        unhashable.extend(f"{boundary.label}: {reason}" for reason in found.unhashable)
    return StepContracts(boundaries, fingerprints, tuple(unhashable))


def cached_payload(planned: StepContracts, reused_step_run_id: str | None) -> dict[str, Any]:
    """The ``contracts`` field of a ``step.cached`` event."""
    return {"fingerprints": planned.fingerprints, "reused_step_run_id": reused_step_run_id}


def step_failure(
    error: BaseException, message: str, *, step: str, run_id: str, step_run_id: str
) -> StepFailedError:
    """The error the runner raises for a failed step: a contract violation keeps its kind."""
    if isinstance(error, ContractViolationError):
        return ContractViolationError(
            message,
            step=step,
            run_id=run_id,
            step_run_id=step_run_id,
            report=error.report,
            report_digest=error.report_digest,
        )
    return StepFailedError(message, step=step, run_id=run_id, step_run_id=step_run_id)


# -- reading back ---------------------------------------------------------------------
def _reused_contracts(reader: Reader, step_run_id: str) -> dict[str, Any] | None:
    """The contract results recorded by the executed step run ``step_run_id``."""
    try:
        origin_run = reader.step_run(step_run_id)["run_id"]
    except KeyError:
        return None
    from pipetrail.ledger.event_reads import closing_step_events

    for event in closing_step_events(reader, origin_run):
        if event.step_run_id == step_run_id and event.kind != "step.cached":
            found = event.contracts
            return found if isinstance(found, dict) else None
    return None


def _summary(boundaries: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for boundary in boundaries:
        for check in boundary.get("checks", []):
            status = check.get("status", "passed")
            counts[status] = counts.get(status, 0) + 1
    return counts


def contract_results(reader: Reader, run_id: str) -> list[dict[str, Any]]:
    """Every contract check of a run's step runs, in the order they ran.

    Steps without contracts are left out. A cached step run lists the results recorded
    by the step run it reused (``from_step_run_id`` names it).

    Args:
        reader: the metadata store.
        run_id: a full run id.

    Returns:
        One dict per step run with ``node_id``, ``step``, ``step_run_id``, ``status``,
        ``ok`` (None when the results cannot be found), ``report`` (the stored report's
        digest), ``from_step_run_id``, ``counts`` (checks by status) and ``boundaries``.
    """
    # Imported here: running a step (plan, cached payload, failure) parses no event.
    from pipetrail.ledger.event_reads import closing_step_events

    steps: list[dict[str, Any]] = []
    for event in closing_step_events(reader, run_id):
        recorded = event.contracts
        if not isinstance(recorded, dict):
            continue
        origin: str | None = event.step_run_id
        if event.kind == "step.cached":
            origin = recorded.get("reused_step_run_id")
            recorded = (_reused_contracts(reader, origin) if origin else None) or {}
        boundaries = list(recorded.get("boundaries") or [])
        steps.append(
            {
                "node_id": event.node_id,
                "step": event.step,
                "step_run_id": event.step_run_id,
                "status": event.kind.removeprefix("step."),
                "ok": recorded.get("ok"),
                "report": recorded.get("report"),
                "from_step_run_id": origin,
                "counts": _summary(boundaries),
                "boundaries": boundaries,
            }
        )
    return steps


def run_contracts(reader: Reader, ref: str) -> dict[str, Any]:
    """Every contract check of a run (``ref``: id, prefix or ``latest``).

    Returns:
        ``run_id``, ``pipeline``, ``ok`` (None when no step has a contract, else whether
        every recorded check held), ``counts`` (checks by status over the run) and
        ``steps`` (see :func:`contract_results`).

    Raises:
        NotFoundError: no run matches ``ref``.
    """
    run_id = reader.resolve_run(ref)
    run = reader.get_run(run_id)
    steps = contract_results(reader, run_id)
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for found in steps:
        for status, n in found["counts"].items():
            counts[status] = counts.get(status, 0) + n
    oks = [found["ok"] for found in steps]
    return {
        "run_id": run_id,
        "pipeline": run["pipeline"],
        "ok": None if not steps else all(ok is True for ok in oks),
        "counts": counts,
        "steps": steps,
    }
