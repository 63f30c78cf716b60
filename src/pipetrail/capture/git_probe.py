"""Whether a folder could be inside a git repository, answered without starting git.

Split from :mod:`pipetrail.capture.git` so that a run whose project is outside any
repository does not load the git capture at all (:func:`git_state`). Imports only
:mod:`pipetrail.capture.git` (when there may be a repository) and the standard library.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from pipetrail.capture.git import GitState

__all__ = ["GIT_LOCATION_VARS", "git_state", "may_be_in_repository"]

# Variables that point git at a repository other than the one it would discover.
GIT_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR")


def git_state(path: Path) -> GitState | None:
    """:func:`~pipetrail.capture.git.capture_git` of ``path``, with its default timeout.

    Where no repository can hold ``path`` the answer, None, is given here: the git
    capture is imported only when git may find one.
    """
    if not path.exists():
        return None
    if not may_be_in_repository(path if path.is_dir() else path.parent):
        return None
    from pipetrail.capture.git import capture_git

    return capture_git(path)


def may_be_in_repository(where: Path) -> bool:
    """Whether git could find a repository for ``where``; False only when it surely cannot.

    Git's discovery walks up from ``where`` looking for a ``.git`` entry (a folder, or a
    file naming one) or a folder that is itself a git folder (a bare repository, or the
    inside of ``.git``), unless ``GIT_DIR`` and friends point elsewhere. This checks the
    same places without starting git: two process starts saved at every run outside a
    repository. Anything that might be a repository answers True, and git decides.
    """
    if any(os.environ.get(name) for name in GIT_LOCATION_VARS):
        return True
    folder = os.path.abspath(where)
    while True:
        if os.path.lexists(os.path.join(folder, ".git")) or (
            os.path.isfile(os.path.join(folder, "HEAD"))
            and os.path.isdir(os.path.join(folder, "objects"))
        ):
            return True
        parent = os.path.dirname(folder)
        if parent == folder:
            return False
        folder = parent
