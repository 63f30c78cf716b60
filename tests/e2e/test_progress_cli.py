"""The plain progress lines of a real run in which a producer executes again.

The producer's stored output is damaged between two runs: the second run's consumer finds
it corrupt, the producer executes again, and the progress counts it once.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest

from tests.support.cli import cli_inline

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

pytestmark = pytest.mark.e2e


PIPELINE = """
from pipetrail import pipeline, step

@step
def produce() -> bytes:
    return bytes(i % 251 for i in range(100_000))  # a loose object file

@step
def consume(data: bytes, tag: int = 0) -> int:
    return sum(data) + tag

@pipeline
def flow(tag: int = 0):
    return consume(produce(), tag=tag)
"""


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli_inline(root, *args, env={"COLUMNS": "80"}, unset=("PIPETRAIL_",))


def test_a_producer_executed_again_is_shown_once_as_re_executed(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    assert cli(root, "init").returncode == 0
    (root / "flow.py").write_text(PIPELINE)
    first = cli(root, "run", "flow.py", "--json")
    assert first.returncode == 0, first.stderr
    digest = json.loads(first.stdout)["steps"][0]["outputs"]["output"]
    hex_part = digest.removeprefix("blake3:")
    stored = root / ".pipetrail" / "objects" / hex_part[:2] / hex_part[2:]
    stored.chmod(0o644)
    data = bytearray(stored.read_bytes())
    data[500] ^= 1
    stored.write_bytes(bytes(data))

    second = cli(root, "run", "flow.py", "-p", "tag=1")  # stderr is no terminal: plain lines

    assert second.returncode == 0, second.stderr
    steps = [line.strip() for line in second.stderr.splitlines() if line.startswith("  [")]
    assert [re.sub(r" \d+\.\d\ds$", "", line) for line in steps] == [  # without timings
        "[1/2] produce: cached",
        "[1/2] produce: re-executed",
        "[2/2] consume: completed",
    ]
