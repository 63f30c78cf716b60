"""Erasure of one source: ``pipetrail purge --source PATH --reason TEXT``.

Owns :func:`purge_source`. A request to erase someone's data names the source that holds
it; what pipetrail stored from it is the source's snapshot and everything the runs that
read it derived. A purge deletes those runs (the ordinary run deletion, the purge's
reason recorded) and collects at once, so the snapshot and the outputs go unless a kept
run still names them. The ``store.collected`` event is the tombstone (``policy`` is
``purge``, the reason, the source and the runs purged), as for retention policies
(:mod:`pipetrail.governance.retention`).

What a protection keeps (a registered model version's run, a run an open promotion
request or an alias points at, a pinned run) is not removed, and the report says which
run kept what and why. When a run that reads the source made a *promoted* model version
(an alias points at it), erasing the source removes that model's inputs: the purge is
refused unless forced (``force=True``) by an admin, who signs a decision about each such
model (``decision.recorded``, kind ``other``) before anything is deleted. A forced
purge overrides every protection of the runs that read the source; the model artifacts
themselves stay (their registration names them). A run still running is never purged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.errors import GovernanceError, ParamError, PermissionDeniedError
from pipetrail.execution.crash import effective_status, reconcile_crashed_runs
from pipetrail.ledger.deletions import deleted_among
from pipetrail.ledger.retention_reads import source_runs

if TYPE_CHECKING:
    from pipetrail.governance.service import Governance
    from pipetrail.governance.state import GovernanceState

__all__ = ["purge_source"]

_MAX_REASON = 2000


def _promoted(state: GovernanceState) -> dict[str, list[str]]:
    """Run id -> the ``model@alias`` that point at a version it made."""
    found: dict[str, list[str]] = {}
    for model, aliases in state.aliases.items():
        for alias in aliases:
            number = state.alias_version(model, alias)
            version = state.models.get(model, {}).get(number) if number is not None else None
            if version is not None and version.run_id is not None:
                found.setdefault(version.run_id, []).append(f"{model}@{alias}")
    return found


def purge_source(
    gov: Governance,
    path: str,
    *,
    reason: str,
    force: bool = False,
    dry_run: bool = False,
    wait: float = 0.0,
) -> dict[str, Any]:
    """Erase what the project holds of source ``path`` (see the module docstring).

    Args:
        gov: the project, acting as the configured identity (a forced purge signs).
        path: the source as its runs recorded it (``data/patients.csv``).
        reason: why (recorded with each deletion and in the tombstone).
        force: override every protection; only an admin may, and only with a reason.
        dry_run: report what would go and what stays; record and remove nothing.
        wait: seconds to wait for runs in progress to end.

    Returns:
        ``source``, ``purged`` (run id -> pipeline), ``kept`` (run id -> why),
        ``overridden`` (run id -> the protection a forced purge overrode), ``by_reference``
        (whether the source's content was never copied into the store), ``decisions``
        (the signed decisions of a forced purge) and ``collection`` (the collection's
        report; None in a dry run or when nothing was purged).

    Raises:
        ParamError: no reason, or no run read ``path``.
        GovernanceError: the purge would remove a promoted model's inputs and is not
            forced, or a run that read the source is still running; nothing recorded.
        PermissionDeniedError: forced by someone who is not an admin.
        TamperedLedgerError: a governance event does not verify.
        StoreBusyError: a run writes to the store, or a collection runs; nothing deleted.
    """
    from pipetrail.execution.deletion import delete_runs
    from pipetrail.execution.gc import collect_garbage
    from pipetrail.governance.retention import protections
    from pipetrail.governance.roles import Role

    text = reason.strip()
    if not text or len(text) > _MAX_REASON:
        raise ParamError(
            "a purge needs a reason (at most 2000 characters), recorded for auditors: pass "
            '--reason TEXT (for example --reason "erasure request 2026-114")'
        )
    project = gov.project
    if not dry_run:
        reconcile_crashed_runs(project.ledger)
    reader = project.reader() if dry_run else project.ledger.reader()
    readers = source_runs(reader, path)
    if not readers:
        raise ParamError(
            f"no run read a source {path!r}; give the path as the pipeline's source() "
            "names it (see `pipetrail show RUN` for a run's sources)"
        )
    gone = deleted_among(reader, list(readers))
    runs = {run_id: reader.get_run(run_id) for run_id in readers if run_id not in gone}
    busy = [run_id for run_id, run in runs.items() if effective_status(run) == "running"]
    if busy:
        raise GovernanceError(
            f"run(s) {', '.join(busy)} read {path!r} and are still running; wait for them "
            "to end, then purge; nothing was recorded"
        )
    state = gov.state()
    state.require_intact()
    why = protections(reader, state)
    promoted = _promoted(state)
    hit = {run_id: promoted[run_id] for run_id in runs if run_id in promoted}
    if hit and not force:
        listed = "; ".join(f"run {r} made {', '.join(a)}" for r, a in sorted(hit.items()))
        raise GovernanceError(
            f"purging {path!r} would remove the inputs of a promoted model ({listed}); an "
            "admin may force it with --force and a reason (each model gets a signed "
            "decision); nothing was recorded"
        )
    if force:
        user = state.users.get(gov.user)
        if user is None or Role.ADMIN not in user.roles:
            raise PermissionDeniedError(
                f"a forced purge overrides model protections and needs the role admin; "
                f"{gov.user} does not have it; nothing was recorded"
            )
    kept = {} if force else {r: why[r] for r in runs if r in why}
    overridden = {r: why[r] for r in runs if r in why} if force else {}
    purged = {r: str(run["pipeline"]) for r, run in runs.items() if r not in kept}
    by_reference = all(bool(p.get("by_reference")) for p in readers.values())
    report: dict[str, Any] = {
        "dry_run": dry_run,
        "source": path,
        "purged": purged,
        "kept": kept,
        "overridden": overridden,
        "already_deleted": sorted(gone),
        "by_reference": by_reference,
        "decisions": [],
        "collection": None,
    }
    if dry_run or not purged:
        return report

    def prepare() -> dict[str, Any]:
        if force:
            models = sorted({e.split("@")[0] for entries in hit.values() for e in entries})
            for model in models:
                report["decisions"].append(
                    gov.decide(model, "other", f"forced purge of source {path}: {text}")
                )
        delete_runs(project, list(purged), reason=f"purge of source {path}: {text}")
        return {
            "policy": "purge",
            "reason": text,
            "source": path,
            "purged_runs": dict.fromkeys(purged, f"purge of source {path}"),
        }

    # Erasure does not wait for the grace period: the store is the collector's alone
    # (writers excluded) when the runs are deleted, and only what no kept run names goes.
    report["collection"] = collect_garbage(project, grace=0.0, wait=wait, prepare=prepare)
    return report
