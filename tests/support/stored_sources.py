"""A folder source of every object size, and a store wrapper that remembers its calls."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from pipetrail.store import LocalStore

FILES = 14  # in the folder :func:`mixed_folder` makes


def mixed_folder(tmp_path: Path) -> Path:
    """A project whose ``data/`` holds small, medium (a segment batch) and big files."""
    project = tmp_path / "project"
    (project / "data" / "sub").mkdir(parents=True)
    for i in range(12):  # a batch: medium files go to a segment
        (project / "data" / f"m{i:02d}.bin").write_bytes(os.urandom(20_000))
    (project / "data" / "small.csv").write_text("a,b\n1,2\n")
    (project / "data" / "sub" / "big.bin").write_bytes(os.urandom(1_100_000))  # loose
    return project


class Calls:
    """Wraps a real store: remembers what ``store_files`` and ``stored_sizes`` were asked."""

    def __init__(self, store: LocalStore) -> None:
        self.store = store
        self.handed: list[tuple[str, str | None]] = []
        self.looked_up: list[list[str]] = []

    def store_files(self, batch: list[tuple[str, str | None]]) -> list[tuple[str, int]]:
        self.handed.extend(batch)
        return self.store.put_files(batch)

    def stored_sizes(self, digests: list[str]) -> Mapping[str, int]:
        self.looked_up.append(list(digests))
        return self.store.stored_sizes(digests)

    def clear(self) -> None:
        self.handed.clear()
        self.looked_up.clear()
