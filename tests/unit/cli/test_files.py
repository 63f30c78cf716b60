"""Files the CLI writes: whole or not at all, with the umask's permissions."""

from __future__ import annotations

import errno
import os
import stat
from typing import TYPE_CHECKING

import pytest

from pipetrail.cli.exits import EXIT_BAD_INPUT, EXIT_STORE, exit_code
from pipetrail.cli.files import append_text, output_file_error, write_text
from pipetrail.errors import OutputFileError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def umask() -> Iterator[int]:
    previous = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(previous)


def test_a_new_file_gets_the_umask_permissions(tmp_path: Path, umask: int) -> None:
    target = tmp_path / "sub" / "out.json"
    write_text(target, "{}\n")
    assert target.read_text() == "{}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]
    append_text(tmp_path / "summary.md", "a\n")
    append_text(tmp_path / "summary.md", "b\n")
    assert (tmp_path / "summary.md").read_text() == "a\nb\n"
    assert stat.S_IMODE((tmp_path / "summary.md").stat().st_mode) == 0o640


def test_a_failed_write_leaves_nothing_and_says_which_file(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("keep")
    with pytest.raises(OutputFileError) as caught:
        write_text(tmp_path / "plain" / "out.json", "{}")
    assert str(caught.value).startswith(f"cannot write {tmp_path / 'plain' / 'out.json'}: ")
    assert exit_code(caught.value) == EXIT_BAD_INPUT
    assert (tmp_path / "plain").read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]


def test_a_full_disk_names_the_folder_and_exits_4(tmp_path: Path) -> None:
    error = output_file_error(tmp_path / "x.json", OSError(errno.ENOSPC, "No space left"))
    assert error.disk_full
    assert f"free disk space in {tmp_path}" in str(error)
    assert exit_code(error) == EXIT_STORE
