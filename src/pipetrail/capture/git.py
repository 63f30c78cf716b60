"""Git state of the code a run executes: commit, branch, uncommitted diff, untracked files.

Owns :class:`GitState` and :func:`capture_git`. It runs the ``git`` executable with fixed
argument lists (never a shell) and as few invocations as possible, because it runs at
every run start: none when no folder from the project up to the file system's root could
hold a repository (no ``.git`` entry, no git folder, no ``GIT_DIR``); one, ``status``,
when the working tree's top folder is plain to see (the nearest folder holding a ``.git``
entry, see :func:`~pipetrail.capture.git_probe.probe_repository`, whose one walk up the
folders answers both) and no tracked file changed; ``diff`` besides only when tracked
files changed. When the top folder is not plain to see (``GIT_DIR`` and friends, ceiling
directories, a file-system boundary, a ``core.worktree`` setting, a bare repository)
git is asked for it, ``rev-parse`` beside ``status`` in parallel.
Imports only ``pipetrail.hashing``, its sibling ``git_probe`` and the standard library.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.capture.git_probe import probe_repository as _probe_repository
from pipetrail.hashing import digest_bytes

if TYPE_CHECKING:
    import subprocess
    from pathlib import Path

    from pipetrail.capture.git_probe import RepositoryProbe

__all__ = ["GIT_RECORD_SCHEMA_VERSION", "GitState", "capture_git"]

_log = logging.getLogger(__name__)

GIT_RECORD_SCHEMA_VERSION = 1
_DEFAULT_TIMEOUT_S = 10.0
# core.quotepath=off: paths come back as raw bytes, not C-quoted octal escapes.
# --no-optional-locks: `status` must not take index.lock, or a user's concurrent
# `git commit` could fail because a run was starting.
_GIT = ("git", "-c", "core.quotepath=off", "--no-optional-locks")
# Messages are matched in English, whatever the user's locale.
_GIT_ENV_OVERRIDES = {"LC_ALL": "C"}


@dataclass(frozen=True)
class GitState:
    """The state of a git working tree at one moment.

    Attributes:
        commit: full id of ``HEAD``; ``None`` in a repository without commits.
        branch: the checked-out branch (unborn branches included); ``None`` when
            ``HEAD`` is detached.
        dirty: whether the working tree differs from ``HEAD``: a staged or unstaged
            change to a tracked file, or any untracked (not ignored) file, since an
            untracked module can change what a pipeline runs.
        diff: ``git diff HEAD --binary`` (staged and unstaged changes to tracked files,
            against the empty tree when there are no commits). Applying it with
            ``git apply`` to ``commit`` recreates the tracked files. Untracked files are
            named in ``untracked`` but not included.
        untracked: paths of untracked, not ignored files, relative to ``root``, sorted.
        root: absolute path of the working tree's top directory.
    """

    commit: str | None
    branch: str | None
    dirty: bool
    diff: bytes = field(repr=False)
    untracked: list[str]
    root: str

    def to_record(self) -> dict[str, Any]:
        """Return a JSON-able record; the diff is named by digest and size, not embedded.

        ``diff_digest`` is the digest of the diff bytes (``None`` when the diff is
        empty), so the bytes can be stored as a content-addressed blob beside it.
        """
        return {
            "schema_version": GIT_RECORD_SCHEMA_VERSION,
            "root": self.root,
            "commit": self.commit,
            "branch": self.branch,
            "dirty": self.dirty,
            "untracked": list(self.untracked),
            "diff_digest": digest_bytes(self.diff) if self.diff else None,
            "diff_size": len(self.diff),
        }


def capture_git(
    path: Path, *, timeout: float = _DEFAULT_TIMEOUT_S, probe: RepositoryProbe | None = None
) -> GitState | None:
    """Return the git state of the working tree containing ``path``.

    Args:
        path: a file or directory inside the working tree (usually the project root).
        timeout: seconds allowed for all git invocations together.
        probe: :func:`~pipetrail.capture.git_probe.probe_repository` of ``path`` (of its
            folder, for a file), when the caller has it: the folders are not walked again.

    Returns:
        The state, or ``None`` when git is not installed, or ``path`` does not exist
        or is not inside a working tree. ``None`` is also returned, with a warning logged,
        when git fails or times out (for example a repository owned by another user
        that ``safe.directory`` does not allow), so a run can still start.
    """
    if not path.exists():
        return None
    where = path if path.is_dir() else path.parent
    if probe is None:
        probe = _probe_repository(where)
    if not probe.possible:
        return None  # git would look for the same things, after two process starts
    import subprocess  # here: a run outside a repository does without it

    deadline = time.monotonic() + timeout
    env = {**os.environ, **_GIT_ENV_OVERRIDES}
    procs: list[subprocess.Popen[bytes]] = []
    top = probe.top
    try:
        procs.append(_start(where, env, "status", "--porcelain=v2", "--branch", "-z", "-uall"))
        if top is None:
            # Both run at once: the total wait is the slower one, not the sum.
            procs.append(_start(where, env, "rev-parse", "--show-toplevel"))
            top_rc, top_out, top_err = _finish(procs[1], deadline)
            if top_rc != 0:
                if b"not a git repository" not in top_err:
                    _warn_failed("rev-parse", where, top_err)
                return None
            top = _decode(top_out.rstrip(b"\n"))
        status_rc, status_out, status_err = _finish(procs[0], deadline)
        if status_rc != 0:
            if b"not a git repository" not in status_err:
                _warn_failed("status", where, status_err)
            return None
        root = top
        commit, branch, tracked_changed, untracked = _parse_status(status_out)
        diff = b""
        if tracked_changed:
            diff_or_none = _diff(root, env, commit, deadline)
            if diff_or_none is None:
                return None
            diff = diff_or_none
    except FileNotFoundError:
        _log.debug("git is not installed; no git state recorded")
        return None
    except OSError as exc:
        _log.warning("could not run git in %s, so no git state is recorded: %s", where, exc)
        return None
    except subprocess.TimeoutExpired:
        _log.warning(
            "git took longer than %.1f s in %s; no git state recorded. Check the "
            "repository's size or raise the timeout.",
            timeout,
            where,
        )
        return None
    finally:
        for proc in procs:
            _reap(proc)
    return GitState(
        commit=commit,
        branch=branch,
        dirty=tracked_changed or bool(untracked),
        diff=diff,
        untracked=sorted(untracked),
        root=root,
    )


def _start(cwd: Path | str, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    import subprocess

    return subprocess.Popen(
        [*_GIT, "-C", os.fspath(cwd), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def _finish(proc: subprocess.Popen[bytes], deadline: float) -> tuple[int, bytes, bytes]:
    out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 0.001))
    return proc.returncode, out, err


def _run(cwd: str, env: dict[str, str], deadline: float, *args: str) -> tuple[int, bytes, bytes]:
    proc = _start(cwd, env, *args)
    try:
        return _finish(proc, deadline)
    finally:
        _reap(proc)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Kill a git process that is still running and collect it, its pipes closed.

    Still running: after a timeout, or when its answer is not needed any more.
    """
    if proc.poll() is None:
        proc.kill()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    proc.wait()


def _diff(root: str, env: dict[str, str], commit: str | None, deadline: float) -> bytes | None:
    """Return the diff of the working tree against ``HEAD`` (or the empty tree)."""
    base = commit
    if base is None:
        # No commits yet: diff against the empty tree, whose id depends on the
        # repository's object format (SHA-1 or SHA-256), so ask git for it (stdin is
        # empty).
        rc, out, err = _run(root, env, deadline, "hash-object", "-t", "tree", "--stdin")
        if rc != 0:
            _warn_failed("hash-object", root, err)
            return None
        base = out.strip().decode("ascii")
    rc, out, err = _run(
        root,
        env,
        deadline,
        "diff",
        "--binary",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "--src-prefix=a/",
        "--dst-prefix=b/",
        base,
        "--",
    )
    if rc != 0:
        _warn_failed("diff", root, err)
        return None
    return out


def _parse_status(out: bytes) -> tuple[str | None, str | None, bool, list[str]]:
    """Parse ``git status --porcelain=v2 --branch -z`` output.

    Returns:
        ``(commit, branch, tracked_changed, untracked)``.
    """
    commit: str | None = None
    branch: str | None = None
    tracked_changed = False
    untracked: list[str] = []
    tokens = iter(out.split(b"\0"))
    for token in tokens:
        if token.startswith(b"# branch.oid "):
            oid = token[len(b"# branch.oid ") :]
            commit = None if oid == b"(initial)" else oid.decode("ascii")
        elif token.startswith(b"# branch.head "):
            head = token[len(b"# branch.head ") :]
            branch = None if head == b"(detached)" else _decode(head)
        elif token.startswith(b"? "):
            untracked.append(_decode(token[2:]))
        elif token.startswith((b"1 ", b"u ")):
            tracked_changed = True
        elif token.startswith(b"2 "):
            # A rename or copy: the original path follows as its own NUL-separated token.
            tracked_changed = True
            next(tokens, None)
    return commit, branch, tracked_changed, untracked


def _decode(raw: bytes) -> str:
    # Paths are bytes to git; undecodable bytes stay visible as \xNN escapes and keep the
    # record valid UTF-8 JSON.
    return raw.decode("utf-8", "backslashreplace")


def _warn_failed(command: str, where: Path | str, stderr: bytes) -> None:
    _log.warning(
        "`git %s` failed in %s, so no git state is recorded: %s",
        command,
        where,
        stderr.decode("utf-8", "replace").strip() or "no message",
    )
