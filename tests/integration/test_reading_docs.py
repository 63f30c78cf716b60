"""docs/reading.md runs as written: its files are written, its blocks executed in order."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "reading.md"
_BLOCK = re.compile(r"(?:<!-- file: (?P<file>\S+) -->\n)?```python\n(?P<code>.*?)```", re.S)


def test_every_example_of_the_reading_page_runs(tmp_path: Path) -> None:
    blocks = [(m["file"], m["code"]) for m in _BLOCK.finditer(DOC.read_text())]
    assert len(blocks) >= 8
    (tmp_path / "pipetrail.toml").write_text("[pipetrail]\n")
    cwd = Path.cwd()
    os.chdir(tmp_path)
    sys.path.insert(0, str(tmp_path))
    namespace: dict[str, object] = {"__name__": "reading_docs"}
    try:
        for file, code in blocks:
            if file is not None:
                (tmp_path / file).write_text(code)
                continue
            exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - the page's own code
    finally:
        os.chdir(cwd)
        sys.path.remove(str(tmp_path))
        sys.modules.pop("train", None)
