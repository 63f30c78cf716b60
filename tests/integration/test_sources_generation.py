"""A settled re-run trusts the store's generation; every way objects leave the store is seen.

A run copies a folder source into the store; a re-run with nothing changed does not
look the files up in the store, since the store's generation (ADR 0032) is the one at
which the stat cache saw them there. Then the folder's objects leave the store through
each path pipetrail has: deleting the runs and collecting, a retention policy, a purge
of the source, quarantine by ``store verify``. The next run notices (the generation
changed), looks the files up and stores the missing ones again, and ``store verify``
finds every recorded object. Removing an object file by hand changes no generation:
that is damage to the store: ``store verify`` names the missing object, and a run with
``rehash`` copies it in again.
Real projects (SQLite ledger, local store), real runs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.capture import statcache
from pipetrail.core.clock import utcnow
from pipetrail.execution.deletion import delete_runs
from pipetrail.execution.gc import collect_garbage
from pipetrail.execution.integrity import verify_artifacts
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.governance.keys import create_key, load_signer
from pipetrail.governance.purge import purge_source
from pipetrail.governance.retention import apply_retention
from pipetrail.governance.service import Governance
from pipetrail.store import LocalStore

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

PIPE = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def count(folder: Path) -> int:
    return len(list(folder.iterdir()))

@pipeline
def p():
    return count(source("data"))
"""


class Lookups:
    """Counts ``LocalStore.stored_sizes`` calls (the real method still answers)."""

    def __init__(self) -> None:
        self.calls: list[int] = []


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> Lookups:
    monkeypatch.setattr(statcache, "RACY_WINDOW_NS", 0)  # trust files written just now
    seen = Lookups()
    real = LocalStore.stored_sizes

    def counting(self: LocalStore, digests: Sequence[str]) -> Mapping[str, int]:
        wanted = list(digests)
        seen.calls.append(len(wanted))
        return real(self, wanted)

    monkeypatch.setattr(LocalStore, "stored_sizes", counting)
    return seen


@pytest.fixture
def setup(
    files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> Iterator[tuple[Project, Any]]:
    data = project_root / "data"
    data.mkdir()
    for i in range(6):  # medium files (a segment), a small one (the pack), a loose one
        (data / f"m{i}.bin").write_bytes(os.urandom(20_000))
    (data / "small.txt").write_text("a\nb\n")
    (data / "big.bin").write_bytes(os.urandom(1_200_000))
    (project_root / "pipetrail.toml").write_text(
        '[pipetrail]\n\n[retention]\nexploration_runs = "1d"\n'
    )
    project = Project.at(project_root)
    yield project, files.load(unique("genpipe"), PIPE)
    project.close()


def _run(project: Project, definition: Any) -> str:
    return run_pipeline(definition, {}, project, RunOptions()).id


def _file_digests(project: Project, run_id: str) -> set[str]:
    (source,) = project.reader().sources(run_id)
    manifest = project.store.get_bytes(source["digest"])
    return {entry["digest"] for entry in json.loads(manifest)["files"].values()}


def _settled(project: Project, definition: Any, lookups: Lookups) -> list[str]:
    """Run until the stat cache is marked, then once more: no lookup at all."""
    marking = _run(project, definition)
    lookups.calls.clear()
    settled = _run(project, definition)
    assert lookups.calls == []
    return [marking, settled]


def _all_back(project: Project, definition: Any, lookups: Lookups, digests: set[str]) -> None:
    """The next run looks the files up once, stores them again; then settles."""
    lookups.calls.clear()
    run_id = _run(project, definition)
    assert lookups.calls == [len(digests)]
    assert _file_digests(project, run_id) == digests
    assert all(project.store.exists(digest) for digest in digests)
    verified = verify_artifacts(project)
    assert verified["ok"], verified
    lookups.calls.clear()
    _run(project, definition)
    assert lookups.calls == []


def test_deleting_the_runs_and_collecting(setup: Any, lookups: Lookups) -> None:
    project, definition = setup
    first = _run(project, definition)
    digests = _file_digests(project, first)
    later = _settled(project, definition, lookups)
    delete_runs(project, [first, *later], reason="test")
    report = collect_garbage(project, grace=0)
    assert report["objects"] >= len(digests)
    assert not any(project.store.exists(digest) for digest in digests)
    _all_back(project, definition, lookups, digests)


def test_a_retention_policy(setup: Any, lookups: Lookups) -> None:
    project, definition = setup
    first = _run(project, definition)
    digests = _file_digests(project, first)
    _settled(project, definition, lookups)
    done = apply_retention(project, grace=0, now=utcnow() + dt.timedelta(days=2))
    assert done["collection"]["objects"] >= len(digests)
    assert not any(project.store.exists(digest) for digest in digests)
    _all_back(project, definition, lookups, digests)


def test_a_purge_of_the_source(setup: Any, lookups: Lookups, project_root: Path) -> None:
    project, definition = setup
    home = project_root.parent / "homes"
    create_key("alice", folder=home / "alice")
    alice = Governance(project, signer=load_signer("alice", folder=home / "alice"))
    alice.bootstrap()
    first = _run(project, definition)
    digests = _file_digests(project, first)
    _settled(project, definition, lookups)
    done = purge_source(alice, "data", reason="erasure")
    assert done["collection"]["objects"] >= len(digests)
    assert not any(project.store.exists(digest) for digest in digests)
    _all_back(project, definition, lookups, digests)


def test_quarantine_by_store_verify(setup: Any, lookups: Lookups) -> None:
    project, definition = setup
    first = _run(project, definition)
    _settled(project, definition, lookups)
    big = project.root / "data" / "big.bin"
    (digest,) = {d for d in _file_digests(project, first) if project.store.size(d) == 1_200_000}
    object_file = project.store.root / digest[7:9] / digest[9:]
    object_file.chmod(0o644)
    with open(object_file, "r+b") as f:
        first = f.read(1)[0]
        f.seek(0)  # the write goes where the byte was read, not after it
        f.write(bytes([first ^ 1]))
    verified = verify_artifacts(project)
    assert digest in verified["corrupt"]
    assert not project.store.exists(digest)
    lookups.calls.clear()
    _run(project, definition)
    assert len(lookups.calls) == 1
    assert project.store.get_bytes(digest) == big.read_bytes()
    assert verify_artifacts(project)["ok"]


def test_an_object_file_removed_by_hand_is_damage_store_verify_names(
    setup: Any, lookups: Lookups
) -> None:
    project, definition = setup
    first = _run(project, definition)
    _settled(project, definition, lookups)
    (digest,) = {d for d in _file_digests(project, first) if project.store.size(d) == 1_200_000}
    object_file = project.store.root / digest[7:9] / digest[9:]
    object_file.chmod(0o644)
    object_file.unlink()  # outside pipetrail: no generation changes
    lookups.calls.clear()
    _run(project, definition)
    assert lookups.calls == []  # the run trusts the store, as documented
    verified = verify_artifacts(project)
    assert not verified["ok"]
    assert digest in verified["missing"]
    run_pipeline(definition, {}, project, RunOptions(rehash=True))  # the documented repair
    assert project.store.exists(digest)
    assert verify_artifacts(project)["ok"]
