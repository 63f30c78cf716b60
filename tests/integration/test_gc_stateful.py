"""Random sequences of runs, deletions, data changes, collections and concurrent runs.

The model knows, independently of the ledger, what each run computed: the value of every
output (a function of its params) and the bytes of the data folder it read. After every
rule it checks that each kept run still loads every output, verified, with its value,
and that the data files a kept run read are still stored; after a collection with no
grace, that what only deleted runs computed is gone. A concurrent run (another thread,
holding the store's writers lease) must make the collection refuse and remove nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from pipetrail.errors import NotFoundError
from pipetrail.execution.deletion import delete_runs
from pipetrail.execution.gc import collect_garbage
from pipetrail.execution.project import Project
from pipetrail.execution.run import Run
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.hashing import digest_bytes
from pipetrail.store.gc_lock import StoreBusyError
from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

KIB = 1024
# shared(k): the same for every run with that k (cache hits across runs); unique(k, tag):
# per tag; big(tag): a 40 KiB loose object; the data folder: eight 20 KiB files (a
# segment) whose bytes change with each data version.
PIPE = """
import os
import time
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def files(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir())

@step
def shared(k: int) -> int:
    return k * 1000

@step
def unique(s: int, tag: str) -> str:
    return f"{tag}:{s}"

@step
def big(tag: str) -> bytes:
    return (tag.encode() * 50000)[: 40 * 1024]

@step(cache=False)
def hold(n: int) -> int:
    path = os.environ.get("PIPETRAIL_TEST_HOLD")
    deadline = time.monotonic() + 30
    while path and os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return n

@pipeline
def p(k: int = 0, tag: str = "a"):
    return {"u": unique(shared(k), tag), "b": big(tag), "n": hold(files(source("data")))}
"""


def _expected(k: int, tag: str) -> dict[str, Any]:
    return {
        "shared": k * 1000,
        "unique": f"{tag}:{k * 1000}",
        "big": (tag.encode() * 50000)[: 40 * KIB],
        "files": 8 * 20 * KIB,
    }


def _data_files(version: int) -> list[bytes]:
    return [bytes([version % 256, i]) * (10 * KIB) for i in range(8)]


class GarbageCollection(RuleBasedStateMachine):
    """One project per example; the model: run id -> (k, tag, data version, deleted)."""

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="pipetrail-gc-"))
        (self.root / "pipetrail.toml").write_text("[pipetrail]\n")
        self.files = PipelineFiles(self.root)
        import sys

        sys.path.insert(0, str(self.root))
        self.pipe = self.files.load(f"gcstate_{uuid.uuid4().hex[:8]}", PIPE)
        self.project = Project.at(self.root)
        self.version = 0
        self._write_data()
        self.runs: dict[str, dict[str, Any]] = {}

    def _write_data(self) -> None:
        folder = self.root / "data"
        folder.mkdir(exist_ok=True)
        for i, data in enumerate(_data_files(self.version)):
            (folder / f"part{i}.bin").write_bytes(data)

    def _run(self, project: Project, k: int, tag: str) -> str:
        run = run_pipeline(self.pipe, {"k": k, "tag": tag}, project, RunOptions())
        return run.id

    def _record(self, run_id: str, k: int, tag: str) -> None:
        self.runs[run_id] = {"k": k, "tag": tag, "version": self.version, "deleted": False}

    def _kept(self) -> list[str]:
        return [r for r, facts in self.runs.items() if not facts["deleted"]]

    def _output(self, run_id: str, step: str) -> Any:
        run = Run(run_id, self.project, pipeline="p", status="completed", result=None)
        return run.output_of(step)

    # -- rules -----------------------------------------------------------------------
    @initialize(k=st.integers(0, 2), tags=st.lists(st.sampled_from("abcd"), min_size=2, max_size=2))
    def first_runs(self, k: int, tags: list[str]) -> None:
        """Two runs sharing ``shared(k)``: the second reuses the first's from the cache."""
        for tag in tags:
            self._record(self._run(self.project, k, tag), k, tag)
        self.change_data()

    @rule(k=st.integers(0, 2), tag=st.sampled_from(["a", "b", "c", "d"]))
    def run(self, k: int, tag: str) -> None:
        self._record(self._run(self.project, k, tag), k, tag)

    @rule()
    def change_data(self) -> None:
        self.version += 1
        self._write_data()

    @precondition(lambda self: any(not f["deleted"] for f in self.runs.values()))
    @rule(pick=st.integers(0, 1000), collect=st.booleans())
    def delete(self, pick: int, collect: bool) -> None:
        kept = self._kept()
        run_id = kept[pick % len(kept)]
        delete_runs(self.project, [run_id], reason="random deletion")
        self.runs[run_id]["deleted"] = True
        if collect:
            self.gc(dry_run=False)

    @rule(dry_run=st.booleans())
    def gc(self, dry_run: bool) -> None:
        before = sorted(self._stored())
        report = collect_garbage(self.project, dry_run=dry_run, grace=0)
        if dry_run:
            assert sorted(self._stored()) == before  # a dry run removes nothing
            return
        assert len(set(before) - set(self._stored())) == report["objects"]
        assert collect_garbage(self.project, dry_run=True, grace=0)["objects"] == 0
        self._check_collected()

    @rule(k=st.integers(0, 2), tag=st.sampled_from(["a", "b", "c", "d"]))
    def gc_while_a_run_writes(self, k: int, tag: str) -> None:
        hold = self.root / f"hold-{uuid.uuid4().hex[:6]}"
        hold.touch()
        os.environ["PIPETRAIL_TEST_HOLD"] = str(hold)
        done: list[str] = []

        def work() -> None:
            other = Project.at(self.root)
            try:
                done.append(self._run(other, k, tag))
            finally:
                other.close()

        before = sorted(self._stored())
        thread = threading.Thread(target=work)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while not self.project.reader().running_runs() and time.monotonic() < deadline:
                time.sleep(0.01)
            try:
                collect_garbage(self.project, grace=0)
            except StoreBusyError:
                pass
            else:  # pragma: no cover - the run holds the lease until its record is final
                raise AssertionError("a collection ran while a run was writing")
            assert set(before) <= set(self._stored())
        finally:
            hold.unlink()
            thread.join(60)
            os.environ.pop("PIPETRAIL_TEST_HOLD", None)
        assert done
        self._record(done[0], k, tag)

    # -- checks ----------------------------------------------------------------------
    def _stored(self) -> list[str]:
        return list(self.project.store.iter_digests())

    @invariant()
    def kept_runs_load_everything_verified(self) -> None:
        store = self.project.store
        for run_id in self._kept():
            facts = self.runs[run_id]
            for step, value in _expected(facts["k"], facts["tag"]).items():
                assert self._output(run_id, step) == value, (run_id, step)
            for data in _data_files(facts["version"]):
                assert digest_bytes(store.get_bytes(digest_bytes(data))) == digest_bytes(data)
            # The environment record, often described by an earlier (maybe deleted) run.
            reader = self.project.reader()
            record = reader.artifact(reader.get_run(run_id)["environment"])
            assert record is not None
            assert digest_bytes(store.get_bytes(record["blob"])) == record["blob"]

    def _check_collected(self) -> None:
        """After a collection without grace: what only deleted runs computed is gone."""
        kept = [self.runs[r] for r in self._kept()]
        kept_values = {v for f in kept for v in _expected(f["k"], f["tag"]).values()}
        kept_data = {d for f in kept for d in _data_files(f["version"])}
        store = self.project.store
        for run_id, facts in self.runs.items():
            if not facts["deleted"]:
                continue
            for step, value in _expected(facts["k"], facts["tag"]).items():
                if value in kept_values or step == "files":
                    continue  # a kept run computed the same value (or a data size)
                with pytest.raises(NotFoundError):
                    self._output(run_id, step)
            for data in _data_files(facts["version"]):
                if data not in kept_data:
                    assert not store.exists(digest_bytes(data))

    def teardown(self) -> None:
        import sys

        self.project.close()
        self.files.cleanup()
        if str(self.root) in sys.path:
            sys.path.remove(str(self.root))
        shutil.rmtree(self.root, ignore_errors=True)


GarbageCollection.TestCase.settings = settings(
    max_examples=6,
    stateful_step_count=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_garbage_collection = GarbageCollection.TestCase
