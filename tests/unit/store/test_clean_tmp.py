"""``store clean`` against writers in other processes: a live writer's temp files stay.

The writer is a real second process copying a file into the store; it reads from a FIFO,
so it sits in the middle of its copy, temp file open, until the test feeds it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING

import pytest

from pipetrail.hashing import digest_bytes
from pipetrail.store import LocalStore

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from pipetrail.store import LocalStore

    store = LocalStore(Path(sys.argv[1]), small_objects=0)
    print(store.put_file(Path(sys.argv[2]), digest=sys.argv[3])[0], flush=True)
    """
)
DATA = os.urandom(3 * 1024 * 1024 + 5)


def _tmp_files(root: Path) -> list[Path]:
    return sorted(p for p in (root / "tmp").rglob("*") if p.is_file())


class _Writer:
    """A second process copying DATA into the store at ``root``, from a FIFO it waits on."""

    def __init__(self, root: Path, fifo: Path) -> None:
        os.mkfifo(fifo)
        # Held open for writing (O_RDWR does not wait for a reader), so the writer's
        # open() returns at once and its read() waits for data.
        self.feed = os.open(fifo, os.O_RDWR)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(root), str(fifo), digest_bytes(DATA)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        deadline = time.monotonic() + 60
        while not _tmp_files(root):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the writer never started copying: {self.proc.stderr}")
            time.sleep(0.02)

    def finish(self) -> tuple[int, str, str]:
        view = memoryview(DATA)
        while view:
            view = view[os.write(self.feed, view[: 64 * 1024]) :]
        os.close(self.feed)
        self.feed = -1
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=60)
        if self.feed >= 0:
            os.close(self.feed)
            self.feed = -1


@pytest.fixture
def writers() -> Iterator[list[_Writer]]:
    """Writers started by a test; any still running at its end are killed."""
    started: list[_Writer] = []
    yield started
    for writer in started:
        writer.kill()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "pipetrail.toml").write_text("[pipetrail]\n")
    return root


def test_store_clean_never_removes_a_live_writers_temp_file(
    project: Path, tmp_path: Path, writers: list[_Writer]
) -> None:
    objects = project / ".pipetrail" / "objects"
    writer = _Writer(objects, tmp_path / "feed")
    writers.append(writer)
    (held,) = _tmp_files(objects)
    old = time.time() - 3 * 3600
    os.utime(held, (old, old))  # however old it looks
    assert LocalStore(objects).clean_tmp(older_than=-1) == 0
    command = ["store", "clean", "--older-than", "0", "--json"]
    cli = subprocess.run(
        [sys.executable, "-m", "pipetrail.cli.main", *command],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["removed"] == 0
    assert _tmp_files(objects) == [held]
    returncode, out, err = writer.finish()
    assert returncode == 0, err
    assert out.strip() == digest_bytes(DATA)
    store = LocalStore(objects)
    assert store.get_bytes(digest_bytes(DATA)) == DATA
    assert _tmp_files(objects) == []


def test_store_clean_removes_a_killed_writers_temp_file(
    tmp_path: Path, writers: list[_Writer]
) -> None:
    root = tmp_path / "s"
    writer = _Writer(root, tmp_path / "feed")
    writers.append(writer)
    assert LocalStore(root).clean_tmp(older_than=-1) == 0
    writer.kill()
    assert LocalStore(root).clean_tmp(older_than=-1) == 1
    assert list((root / "tmp").iterdir()) == []  # its folder went too
    assert not LocalStore(root).exists(digest_bytes(DATA))


def test_a_writer_whose_temp_folder_was_removed_makes_another(tmp_path: Path) -> None:
    root = tmp_path / "s"
    store = LocalStore(root, small_objects=0)
    store.put_bytes(b"first")
    for folder in (root / "tmp").iterdir():
        folder.rmdir()  # removed behind the writer's back (say, by hand)
    assert store.get_bytes(store.put_bytes(b"second")) == b"second"
