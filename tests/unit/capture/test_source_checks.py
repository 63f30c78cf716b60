"""resolve_source: confinement to the project, and the folders no source may reach."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from pipetrail.capture.source_checks import resolve_source
from pipetrail.errors import DefinitionError

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / ".pipetrail" / "objects" / "ab").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    "label", [".pipetrail", ".pipetrail/objects/ab", "data/../.pipetrail/objects", "."]
)
def test_a_protected_folder_is_refused_inside_or_around(root: Path, label: str) -> None:
    with pytest.raises(DefinitionError, match="where pipetrail keeps its own state"):
        resolve_source(label, root, allow_outside=True, protected=[root / ".pipetrail"])


def test_a_symlink_to_a_protected_folder_is_refused(root: Path) -> None:
    os.symlink(root / ".pipetrail" / "objects", root / "data" / "link")
    with pytest.raises(DefinitionError, match="leads to"):
        resolve_source("data/link", root, allow_outside=False, protected=[root / ".pipetrail"])


def test_data_next_to_a_protected_folder_is_fine(root: Path) -> None:
    found = resolve_source("data", root, allow_outside=False, protected=[root / ".pipetrail"])
    assert found == os.path.realpath(root / "data")
    # A name that merely starts like the protected folder is not inside it.
    (root / ".pipetrail-data").mkdir()
    resolve_source(".pipetrail-data", root, allow_outside=False, protected=[root / ".pipetrail"])
