"""The shared reader of pipetrail.toml's optional tables."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

from pipetrail.config_tables import may_name, project_table
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


@pytest.mark.parametrize(
    "header",
    [
        '["quotas"]',  # a quoted key
        "['quotas']",  # a literal key
        '["\\u0071uotas"]',  # an escape for its first letter
        '["quot\\U00000061s"]',  # a long escape in the middle
    ],
)
def test_a_table_is_found_however_its_name_is_spelled(tmp_path: Path, header: str) -> None:
    (tmp_path / "pipetrail.toml").write_text(f"{header}\nconcurrent_steps = 3\n")
    assert project_table(tmp_path, "quotas") == {"concurrent_steps": 3}


def test_an_escaped_dotted_key_at_the_top_is_a_table(tmp_path: Path) -> None:
    (tmp_path / "pipetrail.toml").write_text('"\\u0061lerts".backoff = 0.5\n')
    assert project_table(tmp_path, "alerts") == {"backoff": 0.5}


def test_an_escape_that_spells_another_name_is_not_the_table(tmp_path: Path) -> None:
    (tmp_path / "pipetrail.toml").write_text('["\\u0071uota"]\nx = 1\n[pipetrail]\np = "a\\\\b"\n')
    assert project_table(tmp_path, "quotas") is None
    assert project_table(tmp_path, "quota") == {"x": 1}


def test_may_name_is_false_only_when_no_spelling_is_possible() -> None:
    assert not may_name(b"[pipetrail]\n", "alerts")
    assert not may_name(b'[pipetrail]\np = "a\\\\b"\n', "alerts")  # no \u escape
    assert may_name(b'["\\u0061lerts"]\n', "alerts")
    assert may_name(b"[alerts]\n", "alerts")
    assert may_name(b'["a\\"b"]\n', 'a"b')  # a name only an escape can spell
    assert not may_name(b'["ab"]\n', 'a"b')
