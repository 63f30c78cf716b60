"""Files the CLI writes, and full disks: the umask's permissions, one line and exit 4.

The full disks are real: a 1 MiB tmpfs mounted in a mount namespace for one command
(tests/support/tiny_disk.py); those tests skip, with the reason, where no such mount is
possible.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from typing import TYPE_CHECKING

import pytest

from tests.support.cli import cli_inline
from tests.support.tiny_disk import on_tiny_disk, tiny_disk_problem

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

pytestmark = pytest.mark.e2e

PIPETRAIL = [sys.executable, "-m", "pipetrail.cli.main"]

PIPELINE = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def load(path: Path) -> bytes:
    return b"read:" + path.read_bytes()

@step
def grow(data: bytes, times: int = 1) -> bytes:
    return data * times

@step
def size(data: bytes) -> int:
    return len(data)

@pipeline
def sizes(times: int = 1):
    return size(grow(load(source("data.bin")), times=times))
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PIPETRAIL_")}


def cli(root: Path, *args: str, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    """``pipetrail ARGS`` in ``root``, run in this process (under ``umask`` if given)."""
    before = os.umask(umask) if umask is not None else None
    try:
        return cli_inline(root, *args, env={"COLUMNS": "80"}, unset=("PIPETRAIL_",))
    finally:
        if before is not None:
            os.umask(before)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    assert cli(folder, "init").returncode == 0
    (folder / "sizes.py").write_text(PIPELINE)
    (folder / "data.bin").write_bytes(os.urandom(64 * 1024))
    done = cli(folder, "run", "sizes.py", "-q")
    assert done.returncode == 0, done.stderr
    return folder


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- permissions ------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002], ids=["022", "027", "002"])
def test_exported_files_get_the_permissions_the_umask_gives(root: Path, umask: int) -> None:
    expected = 0o666 & ~umask
    writes = {
        "prov.json": ("export", "latest", "--format", "prov", "-o", "out/prov.json"),
        "events.jsonl": ("export", "latest", "--format", "openlineage", "-o", "out/events.jsonl"),
        "requirements.txt": ("env", "export", "latest", "-o", "out/requirements.txt"),
        "reproduction.md": ("reproduce", "latest", "-q", "--markdown", "out/reproduction.md"),
    }
    for name, args in writes.items():
        done = cli(root, *args, umask=umask)
        assert done.returncode == 0, done.stderr
        assert _mode(root / "out" / name) == expected, name
    done = cli(root, "check", "sizes.py", "-q", "--report-dir", "reports", umask=umask)
    assert done.returncode == 0, done.stderr
    reports = sorted((root / "reports").iterdir())
    assert [p.suffix for p in reports] == [".json", ".md"]
    assert all(_mode(p) == expected for p in reports)
    assert sorted(p.name for p in (root / "out").iterdir()) == sorted(writes)  # no temp files


def test_replacing_a_file_keeps_its_permissions(root: Path) -> None:
    target = root / "prov.json"
    target.write_text("old")
    target.chmod(0o640)
    done = cli(root, "export", "latest", "--format", "prov", "-o", "prov.json", umask=0o022)
    assert done.returncode == 0, done.stderr
    assert _mode(target) == 0o640
    assert json.loads(target.read_text())


def test_an_unwritable_output_path_is_one_line_and_exit_2(root: Path) -> None:
    (root / "a-file").write_text("x")
    done = cli(root, "export", "latest", "--format", "prov", "-o", "a-file/prov.json")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: cannot write a-file/prov.json: ")
    assert len(done.stderr.strip().splitlines()) == 1


# -- full disks -------------------------------------------------------------------------


@pytest.fixture
def tiny_disk() -> None:
    problem = tiny_disk_problem()
    if problem is not None:
        # The test command runs as root on Linux, where the mount works: a missing mount is
        # a failure, never a silent skip.
        pytest.fail(f"no tiny filesystem can be mounted here: {problem}")


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.mark.usefixtures("tiny_disk")
def test_a_full_store_while_storing_an_output_fails_the_run_in_one_line(root: Path) -> None:
    store = root / "full-store"
    env = {**_env(), "PIPETRAIL_ARTIFACTS": str(store)}
    # 64 KiB read, then 2 MiB returned by `grow`: more than the 1 MiB filesystem holds.
    done = on_tiny_disk(
        store, [*PIPETRAIL, "run", "sizes.py", "-q", "-p", "times=32"], cwd=root, env=env
    )
    assert done.returncode == 4, done.stderr
    line = _one_error_line(done)
    assert "No space left on device" in line
    assert str(store) in line
    assert "step 'grow'" in line
    runs = json.loads(cli(root, "runs", "--json").stdout)
    assert runs[0]["status"] == "failed"
    assert runs[0]["steps_failed"] == 1
    shown = json.loads(cli(root, "show", runs[0]["run_id"], "--json").stdout)
    assert {s["step"]: s["status"] for s in shown["steps"]}["grow"] == "failed"


@pytest.mark.usefixtures("tiny_disk")
def test_a_full_store_while_copying_sources_is_one_line(root: Path) -> None:
    store = root / "full-store"
    env = {**_env(), "PIPETRAIL_ARTIFACTS": str(store)}
    (root / "data.bin").write_bytes(os.urandom(2 * 1024 * 1024))
    done = on_tiny_disk(store, [*PIPETRAIL, "run", "sizes.py", "-q"], cwd=root, env=env)
    assert done.returncode == 4, done.stderr
    line = _one_error_line(done)
    assert "No space left on device" in line
    assert str(store) in line


@pytest.mark.usefixtures("tiny_disk")
@pytest.mark.parametrize(
    "args",
    [
        ("export", "latest", "--format", "prov", "-o", "full/prov.json"),
        ("export", "latest", "--format", "openlineage", "-o", "full/deeper/events.jsonl"),
        ("env", "export", "latest", "-o", "full/requirements.txt"),
        ("reproduce", "latest", "-q", "--markdown", "full/reproduction.md"),
        ("check", "sizes.py", "-q", "--report-dir", "full/reports"),
    ],
    ids=["export", "export-subfolder", "env-export", "reproduce-markdown", "check-reports"],
)
def test_a_full_disk_under_a_written_file_is_one_line_and_exit_4(
    root: Path, args: tuple[str, ...]
) -> None:
    full = root / "full"
    done = on_tiny_disk(full, [*PIPETRAIL, *args], cwd=root, env=_env(), fill=True)
    assert done.returncode == 4, done.stderr
    line = _one_error_line(done)
    assert "No space left on device" in line
    assert f"free disk space in {full}" in line
    assert list(full.iterdir()) == []  # the mount ended; nothing was written beside it


@pytest.mark.usefixtures("tiny_disk")
def test_a_full_disk_under_the_ledger_is_one_line_and_exit_4(root: Path) -> None:
    folder = root / "full-ledger"
    env = {**_env(), "PIPETRAIL_METADATA": f"sqlite:///{folder / 'ledger.db'}"}
    done = on_tiny_disk(folder, [*PIPETRAIL, "run", "sizes.py", "-q"], cwd=root, env=env, fill=True)
    assert done.returncode == 4, done.stderr
    line = _one_error_line(done)
    assert str(folder / "ledger.db") in line


NOISY = """
import os
from pipetrail import pipeline, step

@step
def noise(n: int) -> bytes:
    return os.urandom(n)  # never the same twice: a reproduction stores new bytes

@step
def size(data: bytes) -> int:
    return len(data)

@pipeline
def noisy(n: int = 200_000):
    return size(noise(n))
"""


@pytest.mark.usefixtures("tiny_disk")
@pytest.mark.parametrize(
    "args",
    [
        ("reproduce", "latest"),
        ("check", "noisy.py"),  # its run is a cache hit: its reproduction fills the disk
        ("check", "noisy.py", "-p", "n=150000"),  # its run executes, and fills the disk
    ],
    ids=["reproduce", "check-reproduction", "check-run"],
)
def test_a_full_store_while_reproducing_is_one_line_and_exit_4(
    root: Path, args: tuple[str, ...]
) -> None:
    (root / "noisy.py").write_text(NOISY)
    done = cli(root, "run", "noisy.py", "-q")
    assert done.returncode == 0, done.stderr
    # The store's temp folder is full: objects already stored stay readable, a new one
    # cannot be written (it is written there first, then renamed into place).
    objects = root / ".pipetrail" / "objects"
    full = on_tiny_disk(objects / "tmp", [*PIPETRAIL, *args, "-q"], cwd=root, env=_env(), fill=True)

    assert full.returncode == 4, full.stderr
    line = _one_error_line(full)
    assert "step 'noise' failed in run " in line
    assert "No space left on device" in line
    assert f"free disk space on the filesystem holding {objects}" in line
    runs = json.loads(cli(root, "runs", "--json").stdout)
    assert runs[0]["status"] == "failed"  # the run that could not store its output
