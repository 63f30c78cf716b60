"""Retention policies on each metadata backend: what `gc --policy` deletes, what it never
touches (model versions, aliases, open promotion requests, pins, young runs), and the
tombstone it leaves."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.core.clock import utcnow
from pipetrail.errors import (
    GovernanceError,
    NotFoundError,
    ParamError,
    PermissionDeniedError,
    ProjectError,
    StepFailedError,
)
from pipetrail.execution.deletion import delete_runs
from pipetrail.execution.explain import run_summary
from pipetrail.execution.integrity import verify_artifacts, verify_ledger
from pipetrail.execution.project import Project
from pipetrail.execution.run import Run
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.governance.keys import create_key, load_signer
from pipetrail.governance.purge import purge_source
from pipetrail.governance.retention import apply_retention, plan_retention
from pipetrail.governance.service import Governance
from pipetrail.ledger.annotations import tag_draft, untag_draft
from pipetrail.ledger.retention_reads import PIN_TAG, retention_candidates, source_runs
from pipetrail.lineage.readout import open_output, resolve_output
from pipetrail.store.gc_lock import StoreBusyError, collector_lock

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

TRAIN = """
from pipetrail import pipeline, source, step

@step
def train(auc: float, fail: bool = False) -> dict:
    if fail:
        raise ValueError("diverged")
    return {"roc_auc": auc, "rows": 100}

@step
def rows(path) -> int:
    return len(path.read_text().splitlines())

@pipeline
def fit(auc: float = 0.97, fail: bool = False, labelled: bool = False):
    out = {"train": train(auc, fail)}
    if labelled:
        out["rows"] = rows(source("data/people.csv", classification="pii"))
    return out
"""

DAY = dt.timedelta(days=1)


@pytest.fixture
def setup(
    metadata_url: str, files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> Iterator[tuple[Project, Any, Callable[[str], Governance]]]:
    (project_root / "pipetrail.toml").write_text(
        f'[pipetrail]\nmetadata = "{metadata_url}"\n\n'
        '[retention]\nexploration_runs = "30d"\nfailed_runs = "1d"\n'
        'pii_sources = "10d"\n'
    )
    (project_root / "data").mkdir()
    (project_root / "data" / "people.csv").write_text("a\nb\nc\n")
    project = Project.at(project_root)
    fit = files.load(unique("fit"), TRAIN)
    home = project_root.parent / "homes"
    keys = {name: create_key(name, folder=home / name).text for name in ("alice", "rita")}
    people = {
        name: Governance(project, signer=load_signer(name, folder=home / name)) for name in keys
    }
    people["alice"].bootstrap()
    people["alice"].add_user("rita", keys["rita"], roles=("researcher",))
    yield project, fit, people.__getitem__
    project.close()


def _run(project: Project, fit: Any, **params: Any) -> str:
    return run_pipeline(fit, params, project, RunOptions()).id


def _failed(project: Project, fit: Any, auc: float) -> str:
    before = {r["run_id"] for r in retention_candidates(project.reader())}
    with pytest.raises(StepFailedError):
        run_pipeline(fit, {"auc": auc, "fail": True}, project, RunOptions())
    (run_id,) = {r["run_id"] for r in retention_candidates(project.reader())} - before
    return str(run_id)


def _output(project: Project, run_id: str) -> Any:
    return Run(run_id, project, pipeline="fit", status="completed", result=None).output_of("train")


def test_policy_deletes_expired_runs_and_never_what_a_protection_keeps(setup: Any) -> None:
    project, fit, as_ = setup
    model_run = _run(project, fit, auc=0.91)
    request_run = _run(project, fit, auc=0.92)
    pinned = _run(project, fit, auc=0.93)
    plain = _run(project, fit, auc=0.94)
    labelled = _run(project, fit, auc=0.95, labelled=True)
    failed = _failed(project, fit, 0.96)
    rita = as_("rita")
    rita.register("churn", f"{model_run}:train")
    rita.register("churn", f"{request_run}:train")
    rita.request_promotion("churn", 2, "staging", rationale="try it", risk="low")
    project.ledger.append([tag_draft(pinned, {PIN_TAG: "audit baseline"})])

    # Two days on: only the failed run is past its rule.
    soon = apply_retention(project, grace=0, now=utcnow() + 2 * DAY, dry_run=True)
    assert set(soon["expired"]) == {failed}
    assert soon["expired"][failed]["rule"] == "failed_runs"
    assert soon["collection"] is None
    assert not run_summary(project.reader(), failed)["deleted"]  # a dry run records nothing

    # Eleven days on: the run that read a pii source is past pii_sources too.
    later = apply_retention(project, grace=0, now=utcnow() + 11 * DAY, dry_run=True)
    assert set(later["expired"]) == {failed, labelled}
    assert later["expired"][labelled]["rule"] == "pii_sources"
    # Its `rows` output is pii too (a label flows down lineage): pii_outputs selects it.
    outputs = plan_retention(
        project.reader(), {"pii_outputs": 5 * 86400.0}, grace=0, now=utcnow() + 6 * DAY
    )
    assert set(outputs.expired) == {labelled}

    # A month on: every unprotected run goes; the protected ones stay, each saying why.
    # The dry run says what the collection will free, to the object and the byte.
    estimate = apply_retention(project, grace=0, now=utcnow() + 31 * DAY, dry_run=True)
    done = apply_retention(project, grace=0, now=utcnow() + 31 * DAY)
    assert estimate["would_free"]["objects"] == done["collection"]["objects"] > 0
    assert estimate["would_free"]["bytes"] == done["collection"]["bytes"] > 0
    assert estimate["would_free"]["kinds"] == done["collection"]["kinds"]
    assert set(estimate["expired"]) == set(done["expired"])
    freed = estimate["would_free"]
    per_run = estimate["expired"].values()
    # Every object freed is one a run deleted now or earlier names (some several).
    assert sum(e["objects"] for e in per_run) >= freed["objects"] - freed["earlier"]["objects"]
    assert all(e["objects"] <= freed["objects"] for e in per_run)
    assert estimate["expired"][plain]["objects"] > 0  # its output, which only it names
    assert set(done["expired"]) == {failed, labelled, plain}
    why = {run_id: entry["why"] for run_id, entry in done["protected"].items()}
    assert why[model_run] == "registered as churn v1"
    assert "open promotion request" in why[request_run]
    assert why[pinned] == "pinned (audit baseline)"
    assert done["collection"]["objects"] > 0
    assert done["collection"]["event_seq"] is not None

    assert _output(project, model_run) == {"roc_auc": 0.91, "rows": 100}
    assert _output(project, request_run) == {"roc_auc": 0.92, "rows": 100}
    assert _output(project, pinned) == {"roc_auc": 0.93, "rows": 100}
    with pytest.raises(NotFoundError):
        _output(project, plain)

    summary = run_summary(project.reader(), plain)
    assert "retention policy exploration_runs = 30d" in summary["deleted"]["reason"]
    assert summary["purged"]["policy"] == "exploration_runs"
    assert summary["purged"]["seq"] == done["collection"]["event_seq"]
    assert run_summary(project.reader(), failed)["purged"]["policy"] == "failed_runs"
    assert run_summary(project.reader(), model_run)["purged"] is None

    verified = verify_artifacts(project)
    assert verified["ok"], verified
    assert verified["collected"]  # purged on purpose, not missing
    assert verify_ledger(project)["ok"]

    # Unpinned, the run is exploration again; the model's runs stay whatever the rules.
    project.ledger.append([untag_draft(pinned, [PIN_TAG], {PIN_TAG})])
    again = apply_retention(project, grace=0, now=utcnow() + 31 * DAY)
    assert set(again["expired"]) == {pinned}
    assert set(again["protected"]) == {model_run, request_run}


def test_a_dry_run_counts_only_what_no_kept_run_still_names(setup: Any) -> None:
    project, fit, _ = setup
    first = _run(project, fit, auc=0.81)
    reuser = _run(project, fit, auc=0.81)  # a cache hit: names the first run's output
    other = _run(project, fit, auc=0.82)
    project.ledger.append([tag_draft(reuser, {PIN_TAG: "keeps the shared output"})])
    later = utcnow() + 31 * DAY
    dry = apply_retention(project, grace=0, now=later, dry_run=True)
    assert set(dry["expired"]) == {first, other}
    # The first run's output is the pinned run's too: it is not freed, so the first run
    # frees less than the other (whose output only it names), and nothing is recorded.
    assert dry["expired"][first]["objects"] < dry["expired"][other]["objects"]
    assert dry["would_free"]["shared"] == 0
    assert dry["would_free"]["earlier"] == {"objects": 0, "bytes": 0}
    assert not run_summary(project.reader(), first)["deleted"]
    done = apply_retention(project, grace=0, now=later)
    assert done["collection"]["objects"] == dry["would_free"]["objects"]
    assert done["collection"]["bytes"] == dry["would_free"]["bytes"]
    assert _output(project, reuser) == {"roc_auc": 0.81, "rows": 100}
    with pytest.raises(NotFoundError):
        _output(project, other)


def _stored(project: Project, digest: str) -> bool:
    """Whether an artifact's bytes are stored (a sealed one's are its ciphertext blob)."""
    row = project.reader().artifact(digest)
    return project.store.exists(str(row["blob"]) if row else digest)


def _rules(project: Project, text: str) -> None:
    toml = project.root / "pipetrail.toml"
    head = toml.read_text().split("[retention]")[0]
    toml.write_text(head + "[retention]\n" + text)


def test_content_rules_remove_outputs_and_source_copies_of_runs_that_stay(
    setup: Any,
) -> None:
    project, fit, as_ = setup
    model_run = _run(project, fit, auc=0.71, labelled=True)
    as_("rita").register("churn", f"{model_run}:train")
    plain = _run(project, fit, auc=0.72, labelled=True)
    pinned = _run(project, fit, auc=0.73, labelled=True)  # `rows`: a cache hit, shared
    project.ledger.append([tag_draft(pinned, {PIN_TAG: "keeps its outputs"})])
    _rules(project, 'step_outputs = "5d"\nsources = "8d"\n')
    reader = project.reader()
    (source,) = reader.sources(plain)
    (rows_step,) = [s for s in reader.step_runs(plain) if s["node_id"] == "rows"]
    assert rows_step["status"] == "cached"
    rows_digest = rows_step["outputs"]["output"]
    environment = reader.get_run(plain)["environment"]
    assert _stored(project, rows_digest)
    assert _stored(project, source["digest"])

    later = utcnow() + 6 * DAY
    dry = apply_retention(project, grace=0, now=later, dry_run=True)
    assert set(dry["content"]) == {plain}
    assert dry["content"][plain]["classes"] == ["step_outputs"]
    assert dry["expired"] == {}
    assert dry["protected"][model_run] == {"rule": "step_outputs", "why": "registered as churn v1"}
    assert dry["protected"][pinned]["why"] == "pinned (keeps its outputs)"
    assert dry["content"][plain]["objects"] == dry["would_free"]["objects"] > 0

    done = apply_retention(project, grace=0, now=later)
    collection = done["collection"]
    assert (collection["objects"], collection["bytes"]) == (
        dry["would_free"]["objects"],
        dry["would_free"]["bytes"],
    )
    summary = run_summary(project.reader(), plain)
    assert not summary["deleted"]  # the run and its record stay
    assert summary["purged"]["content"] == ["step_outputs"]
    assert summary["purged"]["seq"] == collection["event_seq"]
    with pytest.raises(NotFoundError):
        _output(project, plain)
    found = resolve_output(project.reader(), f"{plain}:train")
    assert "the step outputs of run" in str(found.purged)
    # What other runs name stays: the shared `rows` output, the model's; the run's own
    # record too (its environment), and its source copy (that rule has not come due).
    assert _stored(project, rows_digest)
    assert _output(project, model_run) == {"roc_auc": 0.71, "rows": 100}
    assert _stored(project, environment)
    assert _stored(project, source["digest"])
    verified = verify_artifacts(project)
    assert verified["ok"], verified
    assert verified["collected"]
    again = apply_retention(project, grace=0, now=later, dry_run=True)
    assert again["content"] == {}  # purged content is not purged twice

    # Nine days on: the source copy goes too, except where a kept run still reads it
    # (the model's run read the same file: its copy is the same object, and stays).
    ninth = apply_retention(project, grace=0, now=utcnow() + 9 * DAY)
    assert ninth["content"][plain]["classes"] == ["sources"]
    assert _stored(project, source["digest"])
    assert verify_artifacts(project)["ok"]
    assert run_summary(project.reader(), model_run)["purged"] is None


def test_a_content_rule_removes_a_source_copy_no_kept_run_reads(setup: Any) -> None:
    project, fit, _ = setup
    old = _run(project, fit, auc=0.61, labelled=True)
    (source,) = project.reader().sources(old)
    (project.root / "data" / "people.csv").write_text("a\nb\nc\nd\n")  # new content
    kept = _run(project, fit, auc=0.62, labelled=True)
    project.ledger.append([tag_draft(kept, {PIN_TAG: "current data"})])
    _rules(project, 'sources = "3d"\n')
    done = apply_retention(project, grace=0, now=utcnow() + 4 * DAY)
    assert set(done["content"]) == {old}
    assert not _stored(project, source["digest"])
    assert _output(project, old) == {"roc_auc": 0.61, "rows": 100}  # outputs stay
    assert run_summary(project.reader(), old)["purged"]["content"] == ["sources"]
    verified = verify_artifacts(project)
    assert verified["ok"], verified
    assert project.reader().artifact(source["digest"])["blob"] in verified["collected"]


def test_an_alias_keeps_its_version_and_young_runs_stay(setup: Any) -> None:
    project, fit, as_ = setup
    promoted = _run(project, fit, auc=0.97)
    as_("rita").register("churn", f"{promoted}:train")
    request = as_("rita").request_promotion("churn", 1, "production", rationale="r", risk="low")
    assert as_("alice").approve(request["request_id"])["moved"]
    young = _run(project, fit, auc=0.5)
    done = apply_retention(project, grace=3600, now=utcnow() + 31 * DAY, dry_run=True)
    assert set(done["expired"]) == {young}
    assert "alias churn@production" in done["protected"][promoted]["why"]
    # A run started within the grace period (measured from `now`) stays.
    fresh = apply_retention(project, grace=40 * 86400, now=utcnow() + 31 * DAY, dry_run=True)
    assert fresh["expired"] == {}
    assert fresh["protected"][young]["why"] == "within the grace period"


def test_bad_retention_tables_are_refused_by_name(setup: Any, project_root: Path) -> None:
    project, fit, _ = setup
    _run(project, fit, auc=0.9)
    toml = project_root / "pipetrail.toml"
    head = toml.read_text().split("[retention]")[0]
    cases = [
        ('[retention]\nold_runs = "3d"\n', "unknown key 'retention.old_runs'"),
        ('[retention]\nstep_outputs = "-3d"\n', "'retention.step_outputs' must be a duration"),
        ("[retention]\nsources = -5\n", "'retention.sources' must be a duration"),
        ('[retention]\nsources = "3 weeks"\n', "'retention.sources' must be a duration"),
        ('[retention]\noutputs = "3d"\n', "unknown key 'retention.outputs'"),
        ('[retention]\npublic_sources = "3d"\n', "unknown key 'retention.public_sources'"),
        ('[retention]\ninternal_sources = "3d"\n', "unknown key 'retention.internal_sources'"),
        ('[retention]\nfailed_runs = "soon"\n', "'retention.failed_runs' must be a duration"),
        ("[retention]\nfailed_runs = 0\n", "longer than zero"),
        ("[retention]\nfailed_runs = true\n", "must be a duration"),
        ('retention = "30d"\n', "'retention' must be a table"),
        ("", "has no [retention] rules"),
    ]
    for table, message in cases:
        toml.write_text(table + head)
        with pytest.raises(ProjectError, match=message.replace("[", r"\[").replace("]", r"\]")):
            apply_retention(project, grace=0, now=utcnow() + 31 * DAY)
    assert len(retention_candidates(project.reader())) == 1  # nothing was deleted


def test_purge_of_a_source_removes_what_no_protection_keeps_and_says_what_stays(
    setup: Any,
) -> None:
    project, fit, as_ = setup
    plain = _run(project, fit, auc=0.81, labelled=True)
    registered = _run(project, fit, auc=0.82, labelled=True)
    unrelated = _run(project, fit, auc=0.83)
    as_("rita").register("churn", f"{registered}:train")

    with pytest.raises(ParamError, match="needs a reason"):
        purge_source(as_("alice"), "data/people.csv", reason=" ")
    with pytest.raises(ParamError, match=r"no run read a source 'data/nobody\.csv'"):
        purge_source(as_("alice"), "data/nobody.csv", reason="erasure")
    dry = purge_source(as_("alice"), "./data/people.csv", reason="erasure 7", dry_run=True)
    assert dry["purged"] == {plain: "fit"}
    assert dry["kept"] == {registered: "registered as churn v1"}
    assert run_summary(project.reader(), plain)["deleted"] is None

    done = purge_source(as_("alice"), "data/people.csv", reason="erasure 7")
    assert done["purged"] == {plain: "fit"}
    assert done["collection"]["event_seq"] is not None
    summary = run_summary(project.reader(), plain)
    assert summary["deleted"]["reason"] == "purge of source data/people.csv: erasure 7"
    assert summary["purged"]["policy"] == "purge of source data/people.csv"
    with pytest.raises(NotFoundError, match=r"removed on purpose: run .* purged by policy"):
        open_output(project.store, resolve_output(project.reader(), f"{plain}:train"))
    # Its `rows` output equals the registered run's (same source, same value): it stays.
    with open_output(project.store, resolve_output(project.reader(), f"{plain}:rows")) as rows:
        assert rows.read()
    assert _output(project, registered) == {"roc_auc": 0.82, "rows": 100}
    assert _output(project, unrelated) == {"roc_auc": 0.83, "rows": 100}
    # The source's sealed copy stays: the registered run names it.
    keyed = source_runs(project.reader(), "data/people.csv")[registered]["digest"]
    with open_output(project.store, resolve_output(project.reader(), keyed)) as kept:
        assert kept.read()
    assert verify_artifacts(project)["ok"]


def test_purging_a_promoted_models_inputs_needs_an_admins_force(setup: Any) -> None:
    project, fit, as_ = setup
    promoted = _run(project, fit, auc=0.91, labelled=True)
    as_("rita").register("churn", f"{promoted}:train")
    request = as_("rita").request_promotion("churn", 1, "production", rationale="r", risk="low")
    as_("alice").approve(request["request_id"])
    model_digest = as_("alice").state().models["churn"][1].digest
    events = project.reader().event_count()

    with pytest.raises(GovernanceError, match=r"promoted model \(run .* made churn@production"):
        purge_source(as_("alice"), "data/people.csv", reason="erasure 9")
    with pytest.raises(PermissionDeniedError, match="needs the role admin"):
        purge_source(as_("rita"), "data/people.csv", reason="erasure 9", force=True)
    assert project.reader().event_count() == events  # refusals record nothing

    done = purge_source(as_("alice"), "data/people.csv", reason="erasure 9", force=True)
    assert set(done["purged"]) == {promoted}
    assert "alias churn@production" in done["overridden"][promoted]
    assert done["decisions"][0]["text"] == "forced purge of source data/people.csv: erasure 9"
    decisions = [e for e in as_("alice").state().decisions if e.by == "alice"]
    assert decisions[-1].content["about"] == {"model": "churn"}
    # What the source fed is gone; the model itself stays (its registration names it).
    with pytest.raises(NotFoundError, match="removed on purpose"):
        open_output(project.store, resolve_output(project.reader(), f"{promoted}:rows"))
    assert _output(project, promoted) == {"roc_auc": 0.91, "rows": 100}
    snapshot = resolve_output(
        project.reader(), source_runs(project.reader(), "data/people.csv")[promoted]["digest"]
    )
    assert snapshot.sealed
    with pytest.raises(NotFoundError):  # the source's sealed copy is gone
        open_output(project.store, snapshot)
    assert resolve_output(project.reader(), f"{promoted}:train").digest == model_digest
    assert verify_artifacts(project)["ok"]


def test_a_policy_refused_by_a_busy_store_deletes_nothing(setup: Any) -> None:
    project, fit, as_ = setup
    old = _run(project, fit, auc=0.7)
    labelled = _run(project, fit, auc=0.71, labelled=True)
    root = project.store.root
    events = project.reader().event_count()
    with collector_lock(root, exclude_writers=False):  # another collection holds the store
        with pytest.raises(StoreBusyError, match="another garbage collection"):
            apply_retention(project, grace=0, now=utcnow() + 31 * DAY)
        with pytest.raises(StoreBusyError, match="another garbage collection"):
            purge_source(as_("alice"), "data/people.csv", reason="erasure")
    assert project.reader().event_count() == events
    assert run_summary(project.reader(), old)["deleted"] is None
    assert run_summary(project.reader(), labelled)["deleted"] is None
    done = apply_retention(project, grace=0, now=utcnow() + 31 * DAY)
    assert set(done["expired"]) == {old, labelled}


def test_a_policy_with_nothing_expired_still_collects(setup: Any) -> None:
    project, fit, _ = setup
    old = _run(project, fit, auc=0.6)
    delete_runs(project, [old], reason="by hand")
    done = apply_retention(project, grace=0)  # nothing is 30 days old yet
    assert done["expired"] == {}
    assert done["collection"]["objects"] > 0  # what only the deleted run named
    assert run_summary(project.reader(), old)["purged"] is None  # deleted by hand, no rule
    quiet = apply_retention(project, grace=0)
    assert quiet["collection"]["objects"] == 0
    assert quiet["collection"]["event_seq"] is None  # nothing removed, nothing purged
