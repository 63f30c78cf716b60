"""Names, tags and notes of runs: ledger events, projected, audited, and refused when bad.

On SQLite and PostgreSQL: tags set, replaced and removed; a note; a name; all of it
verifies, ``audit verify`` catches an edited tag row and ``audit rebuild`` restores it;
a run made by ``reproduce`` is marked so and is not what ``latest`` means.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

import pipetrail
from pipetrail.errors import NotFoundError, ParamError
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.ledger import EventKind
from pipetrail.verify.reproduce import reproduce_run
from tests.integration.test_runner import CHAIN

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from pipetrail.core.pipeline import PipelineDefinition
    from tests.integration.conftest import PipelineFiles

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


@pytest.fixture
def one_run(
    metadata_url: str, files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> Iterator[tuple[pipetrail.Project, str, PipelineDefinition]]:
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    proj = pipetrail.Project.open(project_root)
    chain = files.load(unique("chain"), CHAIN)
    run_id = run_pipeline(chain, {"n": 2}, proj, RunOptions()).id
    yield proj, run_id, chain
    proj.close()


def test_tags_notes_and_names_are_events_projected_and_verified(
    one_run: tuple[pipetrail.Project, str, PipelineDefinition],
) -> None:
    proj, run_id, _ = one_run
    assert proj.tag(run_id, stage="a", epochs=3, ok=True) == {
        "epochs": "3",
        "ok": "true",
        "stage": "a",
    }
    assert proj.tag(run_id, stage="b") == {"epochs": "3", "ok": "true", "stage": "b"}
    assert proj.untag(run_id, "ok", "epochs") == {"stage": "b"}
    proj.note(run_id, "first look: fine")
    proj.note(run_id, "second look")
    assert proj.rename(run_id, "  my run  ") == "my run"
    run = proj.run(run_id)
    assert (run.name, run.tags) == ("my run", {"stage": "b"})
    assert [n.text for n in run.notes] == ["first look: fine", "second look"]
    kinds = [e.kind for e in proj.ledger.iter_events()]
    assert kinds[-6:] == [
        EventKind.RUN_TAGGED,
        EventKind.RUN_TAGGED,
        EventKind.RUN_UNTAGGED,
        EventKind.RUN_NOTED,
        EventKind.RUN_NOTED,
        EventKind.RUN_NAMED,
    ]
    report = proj.ledger.verify()
    assert report.ok, report
    assert [r.id for r in proj.runs(tags={"stage": "b"})] == [run_id]


def test_audit_detects_an_edited_tag_row_and_rebuild_restores_it(
    one_run: tuple[pipetrail.Project, str, PipelineDefinition],
) -> None:
    proj, run_id, _ = one_run
    proj.tag(run_id, stage="prod")
    proj.note(run_id, "ship it")
    db = proj.ledger.db
    db.execute("UPDATE run_tags SET value = 'forged' WHERE run_id = :r", {"r": run_id})
    db.execute("DELETE FROM run_notes WHERE run_id = :r", {"r": run_id})
    db.execute("UPDATE runs SET name = 'forged' WHERE run_id = :r", {"r": run_id})
    report = proj.ledger.verify()
    messages = [p.message for p in report.derived]
    assert any(m.startswith(f"run_tags[{run_id}, stage]: value is 'forged'") for m in messages)
    assert any(m.startswith("run_notes[") and "missing" in m for m in messages)
    assert any(m.startswith(f"runs[{run_id}]: name is 'forged'") for m in messages)
    proj.ledger.rebuild_projections()
    assert proj.ledger.verify().ok
    run = proj.run(run_id)
    assert (run.tags, run.name, [n.text for n in run.notes]) == (
        {"stage": "prod"},
        None,
        ["ship it"],
    )


def test_bad_annotations_are_refused_and_record_nothing(
    one_run: tuple[pipetrail.Project, str, PipelineDefinition],
) -> None:
    proj, run_id, _ = one_run
    before = proj.ledger.reader().event_count()
    with pytest.raises(ParamError, match="tag key '9lives' is not valid"):
        proj.tag(run_id, **{"9lives": "x"})
    with pytest.raises(ParamError, match="one line"):
        proj.tag(run_id, stage="a\nb")
    with pytest.raises(ParamError, match="at least one tag"):
        proj.tag(run_id)
    with pytest.raises(ParamError, match=f"run {run_id} has no tag 'stage'; its tags are: none"):
        proj.untag(run_id, "stage")
    with pytest.raises(ParamError, match="non-empty"):
        proj.note(run_id, "   ")
    with pytest.raises(ParamError, match="non-empty"):
        proj.rename(run_id, "")
    with pytest.raises(NotFoundError, match="no run matches 'ZZZZ'"):
        proj.tag("ZZZZ", stage="a")
    with pytest.raises(ParamError, match="tag key"):
        run_pipeline(one_run[2], {"n": 3}, proj, RunOptions(tags={"bad key": "v"}))
    assert proj.ledger.reader().event_count() == before


def test_a_reproduction_is_marked_and_latest_means_an_ordinary_run(
    one_run: tuple[pipetrail.Project, str, PipelineDefinition],
) -> None:
    proj, run_id, chain = one_run
    report = reproduce_run(proj, run_id, definition=chain)
    assert report.ok
    again = proj.runs(purpose="reproduce")
    assert len(again) == 1
    assert again[0].id != run_id
    assert again[0].purpose == "reproduce"
    assert proj.run("latest").id == run_id
    assert proj.run("latest", any_purpose=True).id == again[0].id
    assert [r.id for r in proj.runs(purpose="run")] == [run_id]
    assert [r.id for r in proj.runs()] == [again[0].id, run_id]


def test_a_store_at_0002_is_upgraded_with_its_runs_params_and_purposes(
    one_run: tuple[pipetrail.Project, str, PipelineDefinition],
) -> None:
    """Migration 0003 back-fills what replaying the events gives: audit finds no difference."""
    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    from pipetrail.ledger.ledger import Ledger
    from pipetrail.ledger.migrate import HEAD_REVISION, current_revision

    proj, run_id, chain = one_run
    reproduce_run(proj, run_id, definition=chain)
    url = proj.config.metadata_url
    proj.close()
    ledger = Ledger.open(url, actor="tester")
    config = Config()
    config.set_main_option("script_location", "pipetrail.ledger:migrations")
    with ledger.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0002")
    assert "run_params" not in sa.inspect(ledger.engine).get_table_names()
    ledger.close()

    upgraded = pipetrail.Project.open(proj.root)
    assert current_revision(upgraded.ledger.engine) == HEAD_REVISION
    report = upgraded.ledger.verify()
    assert report.ok, report
    assert [r.id for r in upgraded.runs(params={"n": 2}, purpose="run")] == [run_id]
    assert upgraded.run("latest").id == run_id
    assert len(upgraded.runs(purpose="reproduce")) == 1
    upgraded.close()


def test_latest_with_only_checks_and_reproductions_says_so(
    metadata_url: str, files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> None:
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    with pipetrail.Project.open(project_root) as proj:
        with pytest.raises(NotFoundError, match="there are no runs yet"):
            proj.run("latest")
        chain = files.load(unique("chain"), CHAIN)
        checked = run_pipeline(chain, {"n": 2}, proj, RunOptions(purpose="check")).id
        with pytest.raises(NotFoundError, match="no ordinary run yet, only runs made by"):
            proj.run("latest")
        assert proj.run("latest", any_purpose=True).id == checked
        assert proj.run(checked).purpose == "check"
