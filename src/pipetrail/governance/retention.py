"""Retention policies: delete the runs the ``[retention]`` rules let go, then collect.

Owns :func:`load_rules` (the validated ``[retention]`` table), :func:`plan_retention`
(which runs a policy deletes, and which it spares and why) and :func:`apply_retention`
(what ``pipetrail gc --policy`` calls). The user's view is in docs/gc.md and
docs/data-handling.md. A rule names a class of run and how long such a run is kept:

* ``exploration_runs``: any run (a run no protection keeps is exploration);
* ``failed_runs``: runs that failed, crashed or were interrupted;
* ``LABEL_sources``: runs that read a source labelled LABEL (``pii_sources = "90d"``);
* ``LABEL_outputs``: runs that recorded a step output labelled LABEL;
* ``step_outputs``, ``sources`` (content rules): the run stays, but its step outputs, or
  the stored copies of the sources it read, are removed once it is older than the rule
  (the same protections apply; the tombstone is ``purged_content``).

A run expires when it ended (or, if it never did, started) longer ago than the shortest
rule its classes have. Whatever the rules say, a run is never deleted while it is
*protected*: it made a registered model version (which every governed alias and open
promotion request points at), it is pinned (``pipetrail runs pin``), it is still
running, or it started within the collection's grace period. Expired runs are deleted
through the ordinary run deletion (``run.deleted``, the rule as reason); the collection
that follows records in its ``store.collected`` event which runs it purged under which
rule (the tombstone ``show`` prints). Everything a kept run names stays, as for any
collection.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.core.clock import utcnow
from pipetrail.errors import ProjectError
from pipetrail.execution.crash import effective_status, reconcile_crashed_runs
from pipetrail.ledger.references import recorded_content_purges
from pipetrail.ledger.retention_reads import labelled_runs, pinned_runs, retention_candidates

if TYPE_CHECKING:
    from pathlib import Path

    from pipetrail.execution.project import Project
    from pipetrail.governance.state import GovernanceState
    from pipetrail.ledger.queries import Reader

__all__ = ["RetentionPlan", "apply_retention", "load_rules", "plan_retention", "protections"]

_FAILED = frozenset({"failed", "crashed", "interrupted"})
# The content rules (config_model.RETENTION_CONTENT): what they remove from runs that stay.
_CONTENT = ("step_outputs", "sources")


def load_rules(path: Path) -> dict[str, float]:
    """The ``[retention]`` rules of the project file ``path`` (rule -> seconds).

    Raises:
        ProjectError: the file cannot be read, is not TOML, or the table is wrong.
    """
    from pipetrail.config_model import validate_retention
    from pipetrail.config_tables import project_table

    return validate_retention(path, project_table(path.parent, "retention"))


@dataclass
class RetentionPlan:
    """What a policy deletes and what it spares.

    Attributes:
        expired: run id -> ``{"rule", "keep_seconds", "age_seconds", "pipeline"}``.
        protected: run id -> ``{"rule", "why"}`` for runs a rule expired but a protection
            keeps.
        content: run id -> ``{"classes", "age_seconds", "pipeline", "status"}`` for runs
            that stay but whose step outputs or source copies a content rule
            (``step_outputs``, ``sources``) removes.
        rules: the rules applied (rule -> seconds).
    """

    expired: dict[str, dict[str, Any]] = field(default_factory=dict)
    content: dict[str, dict[str, Any]] = field(default_factory=dict)
    protected: dict[str, dict[str, Any]] = field(default_factory=dict)
    rules: dict[str, float] = field(default_factory=dict)


def _timestamp(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def protections(reader: Reader, state: GovernanceState | None = None) -> dict[str, str]:
    """Run id -> why no policy may delete it (model versions and what points at them, pins).

    Raises:
        TamperedLedgerError: a governance event does not verify.
    """
    from pipetrail.governance.state import read_state

    state = state or read_state(reader)
    # A registration that does not verify is not in the state: acting on such a record
    # could delete what a model needs.
    state.require_intact()
    why: dict[str, str] = {}
    for run_id, reason in pinned_runs(reader).items():
        why[run_id] = f"pinned ({reason})"
    for model, versions in state.models.items():
        for number, version in versions.items():
            if version.run_id is None:
                continue
            uses = [f"registered as {model} v{number}"]
            uses += [
                f"alias {model}@{alias}"
                for alias in state.aliases.get(model, {})
                if state.alias_version(model, alias) == number
            ]
            uses += [
                f"open promotion request {req.request_id}"
                for req in state.requests.values()
                if req.model == model and req.version == number and req.status == "open"
            ]
            why.setdefault(version.run_id, ", ".join(uses))
    return why


def plan_retention(
    reader: Reader, rules: dict[str, float], *, grace: float, now: dt.datetime | None = None
) -> RetentionPlan:
    """Decide which runs the ``rules`` delete (see the module docstring).

    Args:
        reader: the ledger.
        rules: rule -> seconds (from :func:`load_rules`).
        grace: seconds; a run started more recently is spared.
        now: the moment to measure ages from (default: now).

    Raises:
        TamperedLedgerError: a governance event does not verify.
    """
    plan = RetentionPlan(rules=dict(rules))
    if not rules:
        return plan
    moment = now or utcnow()
    members: dict[str, set[str] | None] = {}
    content_rules = {rule: rules[rule] for rule in _CONTENT if rule in rules}
    run_rules = {rule: value for rule, value in rules.items() if rule not in content_rules}
    for rule in run_rules:
        if rule in ("exploration_runs", "failed_runs"):
            members[rule] = None
        else:
            label, _, kind = rule.rpartition("_")
            members[rule] = labelled_runs(reader, label, kind)
    protected = protections(reader)
    done = recorded_content_purges(reader) if content_rules else {}
    for run in retention_candidates(reader):
        run_id = str(run["run_id"])
        status = effective_status(run)
        ended = _timestamp(run["ended_at"]) or _timestamp(run["started_at"])
        started = _timestamp(run["started_at"])
        if ended is None or started is None:
            continue
        age = (moment - ended).total_seconds()
        matching = [
            (seconds, rule)
            for rule, seconds in run_rules.items()
            if (rule != "failed_runs" or status in _FAILED)
            and (members[rule] is None or run_id in members[rule])  # type: ignore[operator]
        ]
        why = protected.get(run_id)
        if why is None and status == "running":
            why = "still running"
        if why is None and (moment - started).total_seconds() < grace:
            why = "within the grace period"
        seconds, rule = min(matching) if matching else (0.0, "")
        if not matching or age <= seconds:
            # The run stays; a content rule may still take its outputs or sources.
            # (A content rule's name is the class of content it removes.)
            gone = [
                name
                for name, limit in content_rules.items()
                if age > limit and name not in done.get(run_id, set())
            ]
            if not gone:
                continue
            if why is not None:
                plan.protected[run_id] = {"rule": gone[0], "why": why}
                continue
            plan.content[run_id] = {
                "classes": gone,
                "age_seconds": round(age, 3),
                "pipeline": run["pipeline"],
                "status": status,
            }
            continue
        if why is not None:
            plan.protected[run_id] = {"rule": rule, "why": why}
            continue
        plan.expired[run_id] = {
            "rule": rule,
            "keep_seconds": seconds,
            "age_seconds": round(age, 3),
            "pipeline": run["pipeline"],
            "status": status,
        }
    return plan


def _days(seconds: float) -> str:
    if seconds % 86400 == 0:
        return f"{seconds / 86400:g}d"
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    return f"{seconds:g}s"


def apply_retention(
    project: Project,
    *,
    dry_run: bool = False,
    grace: float | None = None,
    wait: float = 0.0,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Apply the project's ``[retention]`` rules: delete expired runs, then collect.

    Args:
        project: the project.
        dry_run: report what would be deleted; record and remove nothing.
        grace: seconds (default: the project's ``gc_grace``): younger runs and objects stay.
        wait: seconds to wait for runs in progress to end.
        now: the moment run ages are measured from (default: now).

    Returns:
        ``rules``, ``expired``, ``content`` and ``protected`` (as :class:`RetentionPlan`),
        ``collection`` (the report of :func:`~pipetrail.execution.gc.collect_garbage`,
        which runs even when no run expired; None in a dry run) and ``would_free`` (in a
        dry run: what the collection would free, from
        :func:`~pipetrail.execution.gc.estimate_freed`; each expired or ``content``
        run's entry then also has ``objects`` and ``bytes``, the freed objects it names).

    Raises:
        ProjectError: no ``[retention]`` rule, or the table is wrong.
        TamperedLedgerError: a governance event does not verify (nothing is deleted).
        StoreBusyError: a run writes to the store, or another collection runs; nothing
            is deleted.
    """
    from pipetrail.config import CONFIG_FILE
    from pipetrail.execution.deletion import delete_runs
    from pipetrail.execution.gc import collect_garbage

    path = project.config.root / CONFIG_FILE
    rules = load_rules(path)
    if not rules:
        raise ProjectError(
            f"{path} has no [retention] rules, so `gc --policy` has nothing to apply; add "
            'some (for example exploration_runs = "30d" and pii_sources = "90d"; see '
            "docs/gc.md) or run `pipetrail gc` without --policy"
        )
    seconds = project.config.gc_grace if grace is None else grace
    if not dry_run:
        reconcile_crashed_runs(project.ledger)
    reader = project.reader() if dry_run else project.ledger.reader()
    plan = plan_retention(reader, rules, grace=seconds, now=now)
    report: dict[str, Any] = {
        "dry_run": dry_run,
        "rules": {rule: _days(value) for rule, value in rules.items()},
        "expired": plan.expired,
        "content": plan.content,
        "protected": plan.protected,
        "collection": None,
        "would_free": None,
    }
    content = {run_id: entry["classes"] for run_id, entry in plan.content.items()}
    if dry_run:
        from pipetrail.execution.gc import estimate_freed

        freed = estimate_freed(project, list(plan.expired), grace=seconds, content=content)
        for run_id, figures in freed.pop("by_run").items():
            (plan.expired.get(run_id) or plan.content[run_id]).update(figures)
        report["would_free"] = freed
        return report

    def prepare() -> dict[str, Any]:
        if not plan.expired and not content:
            return {}  # nothing to delete: an ordinary collection
        by_rule: dict[str, list[str]] = {}
        for run_id, entry in plan.expired.items():
            by_rule.setdefault(entry["rule"], []).append(run_id)
        for rule, run_ids in by_rule.items():
            reason = f"retention policy {rule} = {_days(rules[rule])}: kept no longer"
            delete_runs(project, run_ids, reason=reason)
        tombstone: dict[str, Any] = {
            "policy": "retention",
            "reason": "runs past their [retention] rule",
            "purged_runs": {run_id: entry["rule"] for run_id, entry in plan.expired.items()},
        }
        if content:
            tombstone["purged_content"] = content
        return tombstone

    # The deletions happen once the store is the collector's: refused (a run writes),
    # nothing is deleted; done, the collection that records the tombstone follows.
    report["collection"] = collect_garbage(project, grace=seconds, wait=wait, prepare=prepare)
    return report
