"""The checks a promotion policy asks for, evaluated on the record of the source run.

Each check reads what the ledger already holds about the run that produced the model
version, and returns a :class:`CheckResult` (name, passed, the value it saw, a one-line
detail); the results are frozen, signed, into the promotion request, so approvers sign
what was true when it was asked:

* ``metric:NAME``: the source run's recorded metric ``NAME`` (a logged metric's last
  value or a number a step returned; ``NODE.NAME`` or, when unique, just ``NAME``)
  against the policy's threshold;
* ``gate``: the newest ``gate.checked`` event for the run (``pipetrail check`` made it)
  passed;
* ``reproduced``: the newest ``reproduction.checked`` event reproducing the run matched;
* ``contracts``: the run recorded contract checks and none of them failed;
* ``no_leakage``: the run completed, so no step refused with a leakage error
  (``assert_no_leakage`` raises inside the step, failing the run);
* ``parity``: the run's environment digest equals that of the policy's reference run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.errors import PipetrailError

if TYPE_CHECKING:
    from pipetrail.execution.project import Project
    from pipetrail.governance.policy import AliasPolicy, MetricThreshold
    from pipetrail.lineage.run_facts import RunFacts

__all__ = ["CheckResult", "evaluate_checks"]


@dataclass(frozen=True)
class CheckResult:
    """One check of a policy, as evaluated."""

    name: str
    passed: bool
    value: Any
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what a request freezes)."""
        return asdict(self)


def evaluate_checks(project: Project, policy: AliasPolicy, run_id: str | None) -> list[CheckResult]:
    """Evaluate every check ``policy`` names on the source run ``run_id``."""
    if not policy.checks and not policy.metrics:
        return []
    if run_id is None:
        return [
            CheckResult(name, False, None, "the model version has no source run to check")
            for name in (*policy.checks, *(f"metric:{t.metric}" for t in policy.thresholds))
        ]
    from pipetrail.lineage.run_facts import load_run_facts

    facts = load_run_facts(project, run_id)
    results = [_metric(facts, threshold) for threshold in policy.thresholds]
    for name in policy.checks:
        results.append(_CHECKS[name](project, facts, policy))
    return results


def _metric(facts: RunFacts, threshold: MetricThreshold) -> CheckResult:
    name = f"metric:{threshold.metric}"
    found = facts.metrics.get(threshold.metric)
    if found is None:
        matches = [m for key, m in facts.metrics.items() if key.endswith("." + threshold.metric)]
        if len(matches) > 1:
            listed = ", ".join(sorted(m.name for m in matches))
            return CheckResult(
                name,
                False,
                None,
                f"{threshold.metric!r} names several metrics ({listed}); "
                "write NODE.NAME in the policy",
            )
        found = matches[0] if matches else None
    if found is None:
        listed = ", ".join(sorted(facts.metrics)) or "none"
        return CheckResult(
            name, False, None,
            f"run {facts.run_id} recorded no metric {threshold.metric!r} (its metrics: {listed})",
        )  # fmt: skip
    passed = threshold.holds(found.value)
    verdict = "meets" if passed else "does not meet"
    return CheckResult(
        name, passed, found.value, f"{found.name} = {found.value:g} {verdict} {threshold}"
    )


def _gate(project: Project, facts: RunFacts, policy: AliasPolicy) -> CheckResult:
    from pipetrail.ledger.governance_reads import newest_gate

    found = newest_gate(project.reader(), facts.run_id)
    if found is None:
        return CheckResult(
            "gate", False, None,
            f"no `pipetrail check` gate was recorded on run {facts.run_id}; register the model "
            "from the run `pipetrail check` made",
        )  # fmt: skip
    passed = bool(found.passed)  # an event that did not say did not pass
    detail = "the gate passed" if passed else f"the gate failed: {'; '.join(found.failures)}"
    return CheckResult("gate", passed, passed, detail)


def _reproduced(project: Project, facts: RunFacts, policy: AliasPolicy) -> CheckResult:
    from pipetrail.ledger.governance_reads import newest_reproduction

    found = newest_reproduction(project.reader(), facts.run_id)
    if found is not None:
        return CheckResult(
            "reproduced", found.ok, found.verdict,
            f"reproduction {found.run_id} of run {facts.run_id}: {found.verdict}",
        )  # fmt: skip
    return CheckResult(
        "reproduced", False, None,
        f"run {facts.run_id} was never reproduced; run `pipetrail reproduce {facts.run_id}`",
    )  # fmt: skip


def _contracts(project: Project, facts: RunFacts, policy: AliasPolicy) -> CheckResult:
    from pipetrail.execution.contract_records import run_contracts

    counts: dict[str, int] = run_contracts(project.reader(), facts.run_id)["counts"]
    total, failed = sum(counts.values()), counts.get("failed", 0)
    if total == 0:
        return CheckResult("contracts", False, counts, f"run {facts.run_id} checked no contract")
    if failed:
        return CheckResult(
            "contracts", False, counts, f"{failed} of {total} contract checks of the run failed"
        )
    return CheckResult("contracts", True, counts, f"all {total} contract checks held")


def _no_leakage(project: Project, facts: RunFacts, policy: AliasPolicy) -> CheckResult:
    passed = facts.status == "completed"
    detail = (
        "the run completed: no step refused with a leakage error"
        if passed
        else f"the run is {facts.status}: it did not complete"
    )
    return CheckResult("no_leakage", passed, facts.status, detail)


def _parity(project: Project, facts: RunFacts, policy: AliasPolicy) -> CheckResult:
    reader = project.reader()
    try:
        reference = reader.get_run(reader.resolve_run(str(policy.parity_reference)))
    except PipetrailError as exc:
        return CheckResult("parity", False, None, f"parity_reference: {exc}")
    same = reference["environment"] == facts.environment and facts.environment is not None
    detail = (
        f"the environment equals that of run {reference['run_id']}"
        if same
        else f"the environment differs from that of run {reference['run_id']} "
        f"(`pipetrail env diff {reference['run_id']} {facts.run_id}` shows how)"
    )
    return CheckResult("parity", same, facts.environment, detail)


_CHECKS = {
    "gate": _gate,
    "reproduced": _reproduced,
    "contracts": _contracts,
    "no_leakage": _no_leakage,
    "parity": _parity,
}
