"""What a settled cached run of a pipeline reading a stored folder does not import.

A re-run with nothing changed (the folder's files in the stat cache, their objects in
the store at its current generation) needs no resource statistics (nothing executed),
no sensitive-source handling (the source is not sensitive), no "no such option" error
for ``-q`` (so no ``difflib``) and no thread pool (nothing to store).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tests.unit.test_lazy_imports import FOLDER, _command_modules, _loaded

if TYPE_CHECKING:
    from pathlib import Path


def test_a_settled_cached_run_of_a_stored_folder_imports_only_what_it_uses(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    _command_modules(folder, "init")
    (folder / "data").mkdir()
    for i in range(3):
        (folder / "data" / f"f{i}.bin").write_bytes(bytes([i]) * 5000)
    (folder / "folder_count.py").write_text(FOLDER)
    time.sleep(2.1)  # past the racy window of the stat and environment caches
    output, modules = _command_modules(folder, "run", "folder_count.py", "-q")
    assert "1 executed, 0 cached" in output
    assert "statistics" in modules  # a run that executed a step compares its resources
    output, modules = _command_modules(folder, "run", "folder_count.py", "-q")
    assert "0 executed, 1 cached" in output
    unused = [
        "statistics",
        "pipetrail.execution.sensitive_sources",
        "difflib",
        "concurrent.futures",
    ]
    assert _loaded(modules, unused) == []
