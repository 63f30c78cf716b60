"""The shared reader of pipetrail.toml's optional tables."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from pipetrail.config_tables import project_table
from pipetrail.errors import ProjectError

if TYPE_CHECKING:
    from pathlib import Path


def test_an_absent_file_or_table_is_none(tmp_path: Path) -> None:
    assert project_table(tmp_path, "quotas") is None
    (tmp_path / "pipetrail.toml").write_text('[pipetrail]\nstore = "x"\n')
    assert project_table(tmp_path, "quotas") is None


def test_a_table_is_the_callers_own_copy(tmp_path: Path) -> None:
    (tmp_path / "pipetrail.toml").write_text("[quotas]\nconcurrent_steps = 2\n")
    first = project_table(tmp_path, "quotas")
    first["concurrent_steps"] = 99
    assert project_table(tmp_path, "quotas") == {"concurrent_steps": 2}


def test_an_edit_is_seen_even_with_the_same_size_and_time(tmp_path: Path) -> None:
    path = tmp_path / "pipetrail.toml"
    path.write_text("[quotas]\nconcurrent_steps = 1\n")
    stat = path.stat()
    assert project_table(tmp_path, "quotas") == {"concurrent_steps": 1}
    path.write_text("[quotas]\nconcurrent_steps = 2\n")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime
    assert project_table(tmp_path, "quotas") == {"concurrent_steps": 2}


def test_the_word_elsewhere_in_the_file_is_not_a_table(tmp_path: Path) -> None:
    (tmp_path / "pipetrail.toml").write_text('[pipetrail]\nname = "quotas demo"\n')
    assert project_table(tmp_path, "quotas") is None


def test_broken_toml_names_the_file_and_says_to_fix_it(tmp_path: Path) -> None:
    (tmp_path / "pipetrail.toml").write_text("[quotas\nconcurrent_steps = 1\n")
    with pytest.raises(ProjectError) as caught:
        project_table(tmp_path, "quotas")
    assert str(tmp_path / "pipetrail.toml") in str(caught.value)
    assert "not valid TOML" in str(caught.value)
    assert "fix the file" in str(caught.value)


def test_a_table_left_out_by_its_marker_does_not_parse_the_file(tmp_path: Path) -> None:
    (tmp_path / "pipetrail.toml").write_text("[broken\n")
    assert project_table(tmp_path, "alerts") is None  # no "alerts" in the bytes
