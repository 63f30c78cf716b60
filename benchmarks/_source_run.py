"""``pipetrail run`` of a pipeline whose only source is a folder, whole process, for sources.py.

The project (``pipetrail init`` in a new folder) holds one file, ``folder_run.py``: a
one-step pipeline reading the benchmark's folder through ``source(FOLDER,
allow_outside=True)``, its content copied into the project's store (the default, as
``dvc add`` copies it into DVC's cache). :meth:`CachedRun.prepare` runs it once (the
first run: the folder hashed and copied; timed, for context), waits until the project
folder is older than the two-second window in which a change could go unseen (the
installed-packages cache is keyed by the mtimes of the search path's folders, the
project's among them), and runs it twice more as warm-ups. :meth:`CachedRun.time` then
times ``pipetrail run folder_run.py -q`` with nothing changed, as a user at a shell sees it
(``time.perf_counter`` around ``subprocess.run``: process start, imports, loading the
file, observing the folder through the stat cache, the cache hit, the record, exit), and
checks that the step was a cache hit.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from _common import PIPETRAIL, bench_env, log, run_timed

if TYPE_CHECKING:
    from pathlib import Path

PIPELINE_FILE = "folder_run.py"
PIPELINE_TEXT = '''\
"""One step reading a folder source (written by benchmarks/sources.py)."""

from pathlib import Path

from pipetrail import pipeline, source, step


@step
def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file())


@pipeline
def folder_run() -> int:
    return count_files(source({folder!r}, allow_outside=True))
'''
_SUMMARY = re.compile(r"completed: (\d+) executed, (\d+) cached of (\d+) steps")
_RACY_WINDOW_S = 2.0


class CachedRun:
    """The project and its timed re-runs.

    Args:
        project: a folder that does not exist yet (on the disk of the other stores).
        folder: the source folder, absolute.
    """

    def __init__(self, project: Path, folder: Path) -> None:
        self.project = project
        self.folder = folder
        self.env = bench_env()

    def _run(self, *, cached: bool) -> float:
        seconds, out = run_timed(
            [PIPETRAIL, "run", PIPELINE_FILE, "-q"], cwd=self.project, env=self.env
        )
        found = _SUMMARY.search(out)
        want = ("0", "1", "1") if cached else ("1", "0", "1")
        if found is None or found.groups() != want:
            raise RuntimeError(
                f"pipetrail run {PIPELINE_FILE}: expected (executed, cached, steps) = {want}, "
                f"got {out.strip()!r}"
            )
        return seconds

    def prepare(self) -> float:
        """Make the project, run it once (returned: its wall time) and twice more."""
        self.project.mkdir(parents=True)
        run_timed([PIPETRAIL, "init"], cwd=self.project, env=self.env)
        text = PIPELINE_TEXT.format(folder=str(self.folder))
        (self.project / PIPELINE_FILE).write_text(text)
        first = self._run(cached=False)
        log(f"  pipetrail run (first: hash and copy the folder): {first:.3f} s")
        time.sleep(_RACY_WINDOW_S + 0.1)
        for _ in range(2):
            self._run(cached=True)
        return first

    def time(self) -> float:
        """Time one cached ``pipetrail run``; raise unless its step was a cache hit."""
        return self._run(cached=True)
