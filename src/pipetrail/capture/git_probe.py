"""Where git would find the repository of a folder, answered without starting git.

Split from :mod:`pipetrail.capture.git` so that a run whose project is outside any
repository does not load the git capture at all (:func:`git_state`). One walk up the
folders (:func:`probe_repository`) says both whether git could find a repository and,
when it is plain to see, the top folder of its working tree, which the capture then
uses instead of asking git. Imports only :mod:`pipetrail.capture.git` (when there may be
a repository) and the standard library.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from pathlib import Path

    from pipetrail.capture.git import GitState

__all__ = ["GIT_LOCATION_VARS", "RepositoryProbe", "git_state", "probe_repository"]

# Variables that point git at a repository other than the one it would discover.
GIT_LOCATION_VARS = ("GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR")
# A `worktree = ...` line anywhere in a config file (core.worktree, or an include that
# could set it: any doubt lets git decide). Also matches `[include]`/`[includeIf]`.
_WORKTREE_SETTING = re.compile(r"^\s*(worktree\s*=|\[\s*include)", re.IGNORECASE | re.MULTILINE)


class RepositoryProbe(NamedTuple):
    """What the folders above a path say about its repository (see :func:`probe_repository`).

    Attributes:
        possible: whether git could find a repository; False only when it surely cannot.
        top: the top folder of the working tree git would find, as a real path (as
            ``git rev-parse --show-toplevel`` prints it); None when git must be asked.
    """

    possible: bool
    top: str | None


_NO_REPOSITORY = RepositoryProbe(possible=False, top=None)
_ASK_GIT = RepositoryProbe(possible=True, top=None)


def git_state(path: Path) -> GitState | None:
    """:func:`~pipetrail.capture.git.capture_git` of ``path``, with its default timeout.

    Where no repository can hold ``path`` the answer, None, is given here: the git
    capture is imported only when git may find one, and is given what the walk found.
    """
    if not path.exists():
        return None
    probe = probe_repository(path if path.is_dir() else path.parent)
    if not probe.possible:
        return None
    from pipetrail.capture.git import capture_git

    return capture_git(path, probe=probe)


def probe_repository(where: Path) -> RepositoryProbe:
    """Whether git could find a repository for ``where``, and its working tree's top.

    Git's discovery walks up from ``where`` looking for a ``.git`` entry (a folder, or a
    file naming one) or a folder that is itself a git folder (a bare repository, or the
    inside of ``.git``), unless ``GIT_DIR`` and friends point elsewhere. This checks the
    same places without starting git: two process starts saved at every run outside a
    repository. Anything that might be a repository is ``possible``, and git decides.

    The ``top`` is the nearest folder holding a ``.git`` entry. It is None, to let git
    decide, whenever anything could make git's answer differ: ``GIT_DIR`` and friends, a
    ceiling directory reached first, a file-system boundary on the way (git stops
    there), a git folder met first, a ``.git`` file that does not name its folder, or a
    ``worktree`` setting in the repository's configuration (``core.worktree`` puts the
    tree elsewhere). Git walks the real path: when ``where`` is reached through a
    symbolic link, the top is looked for from its real path.
    """
    if any(os.environ.get(name) for name in GIT_LOCATION_VARS):
        return _ASK_GIT
    start = os.path.abspath(where)
    found = _nearest_git(start)
    if found is None:
        return _NO_REPOSITORY
    real = os.path.realpath(start)
    if real != start:
        found = _nearest_git(real)
        if found is None:
            return _ASK_GIT
        start = real
    folder, dot_git = found
    if dot_git is None or not _git_reaches(start, folder) or not _plain_git_entry(dot_git):
        return _ASK_GIT
    return RepositoryProbe(possible=True, top=folder)


def _nearest_git(start: str) -> tuple[str, str | None] | None:
    """The nearest folder from ``start`` up that holds a ``.git`` entry or is a git folder.

    Returns ``(folder, its .git entry)``, ``(folder, None)`` for a git folder, or None.
    """
    folder = start
    while True:
        dot_git = os.path.join(folder, ".git")
        if os.path.lexists(dot_git):
            return folder, dot_git
        if os.path.isfile(os.path.join(folder, "HEAD")) and os.path.isdir(
            os.path.join(folder, "objects")
        ):
            return folder, None
        parent = os.path.dirname(folder)
        if parent == folder:
            return None
        folder = parent


def _git_reaches(start: str, top: str) -> bool:
    """Whether git's discovery from ``start`` goes up to ``top`` (one of its folders).

    It stops below a ceiling directory and at the boundary of a file system.
    """
    ceilings = {
        os.path.realpath(path)
        for path in os.environ.get("GIT_CEILING_DIRECTORIES", "").split(os.pathsep)
        if path
    }
    folder = start
    try:
        device = os.stat(folder).st_dev
        while folder != top:
            parent = os.path.dirname(folder)
            if parent in ceilings or os.stat(parent).st_dev != device:
                return False
            folder = parent
    except OSError:
        return False
    return True


def _plain_git_entry(dot_git: str) -> bool:
    """Whether a ``.git`` entry's repository keeps its working tree beside it."""
    if os.path.isdir(dot_git):
        git_dirs = [dot_git]
    else:
        try:
            with open(dot_git, encoding="utf-8") as f:
                line = f.readline().strip()
        except (OSError, UnicodeDecodeError):
            return False
        if not line.startswith("gitdir: "):
            return False
        git_dir = os.path.join(os.path.dirname(dot_git), line[len("gitdir: ") :])
        git_dirs = [git_dir]
        try:
            with open(os.path.join(git_dir, "commondir"), encoding="utf-8") as f:
                git_dirs.append(os.path.join(git_dir, f.read().strip()))
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError):
            return False
    for git_dir in git_dirs:
        for name in ("config", "config.worktree"):
            try:
                with open(os.path.join(git_dir, name), encoding="utf-8", errors="replace") as f:
                    text = f.read()
            except FileNotFoundError:
                continue
            except OSError:
                return False
            if _WORKTREE_SETTING.search(text):
                return False
    return True
