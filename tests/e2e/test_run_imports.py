"""What a cached ``pipetrail run`` imports: only what it uses.

Start-up is most of a cached run (``benchmarks/cached_chain.py``, ``benchmarks/sources.py``),
so modules that only some commands or some pipelines need are imported where they are
used. This runs the real command in a new interpreter and lists what it loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

PIPELINE = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())

@step
def double(n: int) -> int:
    return 2 * n

@pipeline
def sizes():
    return double(size(source("data")))
"""

# Run the command in-process after the interpreter started, then report sys.modules.
PROBE = textwrap.dedent(
    """
    import json, sys
    from pipetrail.cli.main import main
    sys.argv = ["pipetrail", "run", "pipe.py", "-q"]
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
    """
)

# Imported by other commands (tables, `show`, environment listings) or by code that uses
# third-party libraries; a cached run of this pipeline needs none of them.
NOT_NEEDED = [
    "rich",
    "importlib.metadata",
    "email",
    "socket",
    # The modules of the other commands (`pipetrail.cli.main.LAZY_COMMANDS`).
    "pipetrail.cli.diff_cmd",
    "pipetrail.cli.env_cmd",
    "pipetrail.cli.export_cmd",
    "pipetrail.cli.lineage_cmd",
    "pipetrail.cli.verify_cmd",
    "pipetrail.cli.contracts_cmd",
]


def test_a_cached_run_imports_neither_rich_nor_importlib_metadata(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("hello")
    (tmp_path / "pipe.py").write_text(PIPELINE)
    # The same command line each time: the installed-packages cache is keyed by the search
    # path (the first run lists them, the second writes the cache: the project folder is
    # new, but only package metadata on the path counts).
    for _ in range(3):
        probe = subprocess.run(
            [sys.executable, "-c", PROBE],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    report = json.loads(probe.stderr.strip().splitlines()[-1])
    assert report["code"] == 0, probe.stderr
    assert "0 executed, 2 cached of 2 steps" in probe.stdout
    # Outside a git repository no git process is started, so subprocess is not needed.
    in_repository = any((folder / ".git").exists() for folder in [tmp_path, *tmp_path.parents])
    watched = NOT_NEEDED if in_repository else [*NOT_NEEDED, "subprocess"]
    loaded = [name for name in watched if name in report["modules"]]
    assert loaded == [], f"a cached run imported {loaded}"
