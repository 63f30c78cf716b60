"""The walk lists each folder through an open descriptor and closes every one it opened.

Whether the walk completes, or stops at a symlink cycle, at a special file, or because
the caller stops reading, no folder descriptor stays open; and the files found keep
the absolute paths the stat cache is keyed by.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from pipetrail.capture.sources import observe_source
from pipetrail.capture.statcache import StatCache
from pipetrail.errors import DefinitionError

if TYPE_CHECKING:
    from pathlib import Path


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))  # Linux


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for sub in ("a", "a/b", "c"):
        (tmp_path / "data" / sub).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "data" / sub / f"f{i}.txt").write_text(f"{sub} {i}")
    return tmp_path


def test_a_complete_walk_closes_every_folder_and_keys_files_by_absolute_path(
    root: Path,
) -> None:
    before = _open_fds()
    with StatCache(root / "stat.db") as cache:
        obs = observe_source("data", root=root, cache=cache, by_reference=True)
        trusted, racy = cache.load(str(root / "data"), tree=True)
    assert _open_fds() == before
    assert sorted(obs.manifest or {}) == sorted(
        f"{sub}/f{i}.txt" for sub in ("a", "a/b", "c") for i in range(3)
    )
    assert sorted([*trusted, *racy]) == sorted(
        str(root / "data" / sub / f"f{i}.txt") for sub in ("a", "a/b", "c") for i in range(3)
    )


def test_a_walk_stopped_by_a_cycle_or_a_fifo_closes_every_folder(root: Path) -> None:
    (root / "data" / "a" / "b" / "loop").symlink_to(root / "data" / "a")
    before = _open_fds()
    with pytest.raises(DefinitionError, match="one of its own parent folders"):
        observe_source("data", root=root, by_reference=True)
    assert _open_fds() == before
    (root / "data" / "a" / "b" / "loop").unlink()
    os.mkfifo(root / "data" / "c" / "pipe")
    with pytest.raises(DefinitionError, match="pipe"):
        observe_source("data", root=root, by_reference=True)
    assert _open_fds() == before
