"""The console entry point leaves the heap out of the interpreter's shutdown collections."""

from __future__ import annotations

import subprocess
import sys


def test_the_entry_point_freezes_the_heap_before_the_interpreter_shuts_down() -> None:
    code = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
        "from pipetrail.cli.main import main\n"
        "sys.argv = ['pipetrail', '--version']\n"
        "main()"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert "version" in out.stdout
    assert out.stdout.strip().endswith("frozen True")
