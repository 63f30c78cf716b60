"""Deleting runs and collecting garbage on real projects (SQLite, and PostgreSQL for the ledger)."""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import AmbiguousPrefixError, NotFoundError
from pipetrail.execution.deletion import RunDeletionError, delete_runs
from pipetrail.execution.explain import list_runs, run_summary
from pipetrail.execution.gc import collect_garbage
from pipetrail.execution.integrity import rebuild_ledger, verify_artifacts, verify_ledger
from pipetrail.execution.project import Project
from pipetrail.execution.run import Run
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.hashing import digest_bytes
from pipetrail.store.gc_lock import StoreBusyError, collector_lock
from tests.integration.conftest import PipelineFiles, statuses

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

pytestmark = pytest.mark.integration

KIB = 1024

# `base` is shared by every run with the same k (a cache hit after the first); `label`
# is unique to a tag; `blob` is a large (loose) object; the folder source holds eight
# files of 20 KiB (copied in one batch: a segment file).
PIPE = """
import os
import time
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def files(folder: Path) -> int:
    return len(list(folder.iterdir()))

@step
def base(k: int) -> int:
    return k * 1000

@step
def label(b: int, tag: str) -> str:
    return f"{tag}:{b}"

@step
def blob(tag: str) -> bytes:
    return (tag.encode() * 50000)[: 40 * 1024]

@step(cache=False)
def gate(n: int) -> int:
    hold = os.environ.get("PIPETRAIL_TEST_HOLD")  # a file: wait while it exists
    deadline = time.monotonic() + 30
    while hold and os.path.exists(hold) and time.monotonic() < deadline:
        time.sleep(0.02)
    return n

@pipeline
def p(k: int = 0, tag: str = "a"):
    n = gate(files(source("data")))
    return {"label": label(base(k), tag), "blob": blob(tag), "n": n}
"""


def _data(root: Path, version: int) -> dict[str, bytes]:
    folder = root / "data"
    folder.mkdir(exist_ok=True)
    contents = {}
    for i in range(8):
        data = bytes([version, i]) * (10 * KIB)
        (folder / f"part{i}.bin").write_bytes(data)
        contents[f"part{i}.bin"] = data
    return contents


def _run(definition: Any, project: Project, **params: Any) -> Run:
    return run_pipeline(definition, params, project, RunOptions())


def _fresh(run: Run) -> Run:
    """A new handle on a run, so every value is read from the store again."""
    return Run(run.id, run.project, pipeline=run.pipeline, status=run.status, result=None)


def _loads(run: Run, tag: str, k: int) -> None:
    """Every output of ``run`` loads, verified, with the value it had."""
    fresh = _fresh(run)
    assert fresh.output_of("label") == f"{tag}:{k * 1000}"
    assert fresh.output_of("blob") == (tag.encode() * 50000)[: 40 * KIB]
    assert fresh.output_of("base") == k * 1000
    assert fresh.output_of("files") == 8


def _gone(run: Run, step: str) -> bool:
    try:
        _fresh(run).output_of(step)
    except NotFoundError:
        return True
    return False


@pytest.fixture
def pipe(files: PipelineFiles, unique: Callable[[str], str]) -> Any:
    return files.load(unique("gcpipe"), PIPE)


def test_gc_frees_what_only_deleted_runs_need_and_keeps_what_kept_runs_reused(
    pipe: Any, project: Project, project_root: Path
) -> None:
    old_data = _data(project_root, 1)
    first = _run(pipe, project, k=1, tag="a")
    _data(project_root, 2)
    second = _run(pipe, project, k=1, tag="b")  # reuses `base` from the first run
    assert statuses(second)["base"] == "cached"

    deleted = delete_runs(project, [first.id], reason="trained on the old data")
    assert deleted[0]["reused_by"] == [second.id]
    dry = collect_garbage(project, dry_run=True, grace=0)
    assert dry["objects"] > 0
    assert dry["event_seq"] is None
    report = collect_garbage(project, grace=0)
    assert (report["objects"], report["bytes"]) == (dry["objects"], dry["bytes"])
    assert report["kinds"]["loose"]["objects"] >= 1  # the first run's 40 KiB blob
    assert report["kinds"]["segment"]["objects"] == 8  # the old data's files
    assert report["segments_dropped"] == 1

    _loads(second, "b", 1)  # the reused output stays
    assert _gone(first, "label")
    assert _gone(first, "blob")
    for data in old_data.values():
        assert not project.store.exists(digest_bytes(data))
    # Nothing more to free, and the audit trail explains what went.
    assert collect_garbage(project, grace=0)["objects"] == 0
    store_report = verify_artifacts(project)
    assert store_report["ok"], store_report
    assert store_report["missing"] == []
    # The old data's manifest was collected (and with it, what it lists stops counting).
    old_manifest = project.reader().sources(first.id)[0]["digest"]
    assert old_manifest in store_report["collected"]
    ledger_report = verify_ledger(project)
    assert ledger_report["ok"], ledger_report
    collected = [e for e in project.ledger.iter_events() if e.kind == "store.collected"]
    assert len(collected) == 1
    listing = project.store.get_bytes(collected[0].payload["removed_list"]).decode().split()
    assert len(listing) == report["objects"]
    assert all(digest_bytes(d) in listing for d in old_data.values())


def test_young_objects_stay_until_the_grace_period_ends(
    pipe: Any, project: Project, project_root: Path
) -> None:
    _data(project_root, 1)
    first = _run(pipe, project, k=2, tag="c")
    delete_runs(project, [first.id], reason="scratch")
    report = collect_garbage(project)  # the default grace: an hour
    assert report["objects"] == 0
    assert report["young"] > 0
    assert not _gone(first, "label")
    assert collect_garbage(project, grace=0)["objects"] == report["young"]


def test_deleted_runs_leave_listings_latest_and_the_cache(
    pipe: Any, project: Project, project_root: Path
) -> None:
    _data(project_root, 1)
    first = _run(pipe, project, k=3, tag="d")
    second = _run(pipe, project, k=4, tag="e")
    delete_runs(project, ["latest"], reason="wrong k")
    reader = project.reader()
    assert [r["run_id"] for r in list_runs(reader)] == [first.id]
    assert reader.resolve_run("latest") == first.id
    summary = run_summary(reader, second.id)  # still readable by id
    assert summary["deleted"]["reason"] == "wrong k"
    assert summary["deleted"]["deleted_by"] == project.ledger.actor
    collect_garbage(project, grace=0)
    third = _run(pipe, project, k=4, tag="e")  # same steps as the deleted run: executed
    assert statuses(third)["label"] == "completed"
    assert statuses(third)["base"] == "completed"
    _loads(third, "e", 4)
    _loads(first, "d", 3)


def test_bad_deletions_are_refused_and_record_nothing(
    pipe: Any, project: Project, project_root: Path
) -> None:
    _data(project_root, 1)
    run = _run(pipe, project, k=5, tag="f")
    _run(pipe, project, k=5, tag="g")
    events = project.reader().event_count()
    with pytest.raises(RunDeletionError, match="needs a reason"):
        delete_runs(project, [run.id], reason="  ")
    with pytest.raises(NotFoundError):
        delete_runs(project, ["ZZZZZZ"], reason="x")
    with pytest.raises(AmbiguousPrefixError):
        delete_runs(project, [run.id[:2]], reason="x")
    with pytest.raises(RunDeletionError, match="name at least one run"):
        delete_runs(project, [], reason="x")
    delete_runs(project, [run.id], reason="first")
    with pytest.raises(RunDeletionError, match=r"deleted already.*'first'"):
        delete_runs(project, [run.id], reason="again")
    assert project.reader().event_count() == events + 1


def test_gc_while_a_run_writes_is_refused_and_removes_nothing(
    pipe: Any, project: Project, project_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _data(project_root, 1)
    first = _run(pipe, project, k=6, tag="h")
    delete_runs(project, [first.id], reason="superseded")
    hold = project_root / "hold"
    hold.touch()
    monkeypatch.setenv("PIPETRAIL_TEST_HOLD", str(hold))
    done: list[Run] = []

    def work() -> None:
        other = Project.at(project_root)
        try:
            done.append(_run(pipe, other, k=6, tag="h"))  # the deleted run's very values
        finally:
            other.close()

    thread = threading.Thread(target=work)
    thread.start()
    try:
        for _ in range(200):  # until the run is recorded and blocked in `gate`
            running = project.reader().running_runs()
            if running:
                break
            threading.Event().wait(0.05)
        assert running
        with pytest.raises(RunDeletionError, match="still running"):
            delete_runs(project, [running[0]["run_id"]], reason="x")
        with pytest.raises(StoreBusyError, match="a run is writing"):
            collect_garbage(project, grace=0)
        assert collect_garbage(project, dry_run=True, grace=0)["objects"] >= 0
    finally:
        hold.unlink()
        thread.join(60)
    assert not _gone(first, "blob")  # nothing was removed
    collect_garbage(project, grace=0)
    _loads(done[0], "h", 6)  # the values it shares with the deleted run stayed


def test_a_second_collection_is_refused(pipe: Any, project: Project) -> None:
    with (
        collector_lock(project.store.root, exclude_writers=False),  # type: ignore[attr-defined]
        pytest.raises(StoreBusyError, match="another garbage collection"),
    ):
        collect_garbage(project, dry_run=True)


@pytest.mark.postgres
def test_deletions_are_derived_rows_audit_checks_and_rebuilds(
    metadata_url: str, pipe: Any, project_root: Path
) -> None:
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    _data(project_root, 1)
    project = Project.at(project_root)
    try:
        run = _run(pipe, project, k=7, tag="i")
        delete_runs(project, [run.id], reason="original reason")
        assert verify_ledger(project)["ok"]
        with project.ledger.db.write():
            project.ledger.db.execute(
                "UPDATE run_deletions SET reason = 'edited' WHERE run_id = :r", {"r": run.id}
            )
        report = verify_ledger(project)
        assert not report["ok"]
        assert [p["table"] for p in report["derived"]] == ["run_deletions"]
        assert run.id in report["derived"][0]["key"]
        rebuilt = rebuild_ledger(project)
        assert [c["table"] for c in rebuilt["changed"]] == ["run_deletions"]
        assert verify_ledger(project)["ok"]
        assert run_summary(project.reader(), run.id)["deleted"]["reason"] == "original reason"
        # A deletion row slipped in with no event is extra, and gc does not believe it.
        other = _run(pipe, project, k=8, tag="j")
        with project.ledger.db.write():
            project.ledger.db.execute(
                "INSERT INTO run_deletions (run_id, reason, deleted_by, deleted_at, seq) "
                "VALUES (:r, 'forged', 'x', '2020-01-01T00:00:00Z', 1)",
                {"r": other.id},
            )
        assert [p["problem"] for p in verify_ledger(project)["derived"]] == ["extra"]
        collect_garbage(project, grace=0)
        _loads(other, "j", 8)
    finally:
        project.close()


def test_an_old_ledger_gains_the_deletions_table_when_read(
    pipe: Any, project: Project, project_root: Path
) -> None:
    from alembic import command
    from alembic.config import Config

    _data(project_root, 1)
    run = _run(pipe, project, k=9, tag="k")
    config = Config()
    config.set_main_option("script_location", "pipetrail.ledger:migrations")
    with project.ledger.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0002")
    project.close()
    path = project_root / ".pipetrail" / "ledger.db"
    names = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert "run_deletions" not in names
    from pipetrail.ledger import open_reader

    reader = open_reader(f"sqlite:///{path}")
    try:
        assert [r["run_id"] for r in list_runs(reader)] == [run.id]
    finally:
        reader.close()
