"""Project discovery: where a project is, and refusing to invent one for read-only use."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pipetrail.config import load_config
from pipetrail.errors import ProjectError

if TYPE_CHECKING:
    from pathlib import Path


def test_must_exist_refuses_a_folder_outside_any_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIPETRAIL_METADATA", raising=False)
    with pytest.raises(ProjectError, match="no pipetrail project here") as caught:
        load_config(tmp_path, must_exist=True)
    assert str(tmp_path) in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_without_must_exist_the_folder_is_taken_with_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIPETRAIL_METADATA", raising=False)
    config = load_config(tmp_path)
    assert config.root == tmp_path.resolve()
    assert not config.has_file


def test_must_exist_accepts_state_folder_or_configured_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PIPETRAIL_METADATA", raising=False)
    (tmp_path / ".pipetrail").mkdir()
    assert load_config(tmp_path, must_exist=True).root == tmp_path.resolve()
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("PIPETRAIL_METADATA", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    assert load_config(other, must_exist=True).root == other.resolve()


@pytest.mark.parametrize(
    ("written", "seconds"), [(None, 3600.0), ('"30m"', 1800.0), ("90", 90.0), ('"0"', 0.0)]
)
def test_gc_grace_is_a_duration(tmp_path: Path, written: str | None, seconds: float) -> None:
    line = "" if written is None else f"gc_grace = {written}\n"
    (tmp_path / "pipetrail.toml").write_text(f"[pipetrail]\n{line}")
    assert load_config(root=tmp_path).gc_grace == seconds


@pytest.mark.parametrize("written", ['"soon"', '"-1h"', "true", '"inf"'])
def test_a_bad_gc_grace_is_refused_naming_the_key(tmp_path: Path, written: str) -> None:
    (tmp_path / "pipetrail.toml").write_text(f"[pipetrail]\ngc_grace = {written}\n")
    with pytest.raises(ProjectError, match=r"'pipetrail\.gc_grace' must be a duration"):
        load_config(root=tmp_path)
