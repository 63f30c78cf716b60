"""Where signed checkpoints are kept, outside the ledger: a folder or a git repository.

A *witness* location holds one file per checkpoint, ``SIZE-TIME.checkpoint`` (the tree
size in 12 digits, the UTC time without separators), and optionally a ``keys`` file of
the public keys trusted to sign them, one ``NAME ed25519:BASE64`` per line (``#`` starts
a comment). A folder is written with plain file operations (whole files, renamed into
place). A git repository gets one commit per checkpoint, made with ``git`` itself in
that repository only, and is read from its whole history (every commit reachable from
any ref, plus the work tree), so a checkpoint removed by a later commit still counts.

The ``keys`` file is a convenience: whoever can write the location can also rewrite it.
An auditor obtains the signers' keys out of band (from the people themselves, or the
project's governance records) and passes them explicitly (docs/audit.md).
"""

from __future__ import annotations

import os
import secrets
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipetrail.errors import GovernanceError
from pipetrail.governance.keys import check_name, parse_public_key

if TYPE_CHECKING:
    from pathlib import Path

    from pipetrail.governance.checkpoint import Checkpoint
    from pipetrail.governance.keys import PublicKey

__all__ = [
    "KEYS_FILE",
    "SUFFIX",
    "FoundNote",
    "Witness",
    "parse_keys",
]

KEYS_FILE = "keys"
SUFFIX = ".checkpoint"
_MAX_FILE = 1 << 20


@dataclass(frozen=True)
class FoundNote:
    """A checkpoint note as found: where (file, or commit and path) and its text."""

    where: str
    text: str


def parse_keys(text: str, *, where: str) -> list[tuple[str, PublicKey]]:
    """Parse a keys file: ``NAME ed25519:BASE64`` per line; blank lines and ``#`` skipped.

    Raises:
        GovernanceError: a line is not a name and a public key (naming the line).
    """
    keys = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise GovernanceError(
                f"{where}, line {number}: expected 'NAME ed25519:BASE64', got {line[:60]!r}"
            )
        try:
            keys.append((check_name(parts[0]), parse_public_key(parts[1])))
        except GovernanceError as exc:
            raise GovernanceError(f"{where}, line {number}: {exc}") from None
    return keys


def _git_env() -> dict[str, str]:
    # Nothing inherited may point git at another repository or index.
    return {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}


class Witness:
    """A checkpoint location: a folder, or the root of a git repository.

    Args:
        path: the folder or repository.
        git: whether it is (or, when writing, is to be made) a git repository; None
            decides by whether ``path/.git`` exists.
    """

    def __init__(self, path: Path, *, git: bool | None = None) -> None:
        self.path = path
        self.git = (path / ".git").exists() if git is None else git

    def __str__(self) -> str:
        return f"{'git repository' if self.git else 'folder'} {self.path}"

    # -- writing ---------------------------------------------------------------------
    def write(self, checkpoint: Checkpoint, note: str, *, signer: str) -> str:
        """Keep ``note``; return where (the file, and the commit for a repository).

        Raises:
            GovernanceError: the location cannot be written, or (git) is not a repository
                of its own; the message says how to fix it.
        """
        if self.git:
            self._prepare_repository()
        else:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise GovernanceError(
                    f"cannot make the checkpoint folder {self.path}: {exc}"
                ) from None
        stamp = checkpoint.time.replace("-", "").replace(":", "").split(".")[0].rstrip("Z")
        name = f"{checkpoint.size:012d}-{stamp}Z"
        target = self.path / f"{name}{SUFFIX}"
        n = 1
        while target.exists() and target.read_text(encoding="utf-8") != note:
            n += 1
            target = self.path / f"{name}-{n}{SUFFIX}"
        tmp = self.path / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            tmp.write_text(note, encoding="utf-8")
            os.replace(tmp, target)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise GovernanceError(f"cannot write the checkpoint {target}: {exc}") from None
        if not self.git:
            return str(target)
        commit = self._commit(target, checkpoint, signer)
        return f"{target} (commit {commit[:12]} in {self.path})"

    def _git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(
                ["git", "-C", str(self.path), *args],
                capture_output=True,
                text=True,
                env=_git_env(),
                check=False,
            )
        except OSError as exc:
            raise GovernanceError(f"cannot run git for {self.path}: {exc}") from None
        if check and done.returncode != 0:
            raise GovernanceError(
                f"git failed in {self.path} ({' '.join(args[:2])}): {done.stderr.strip()[:300]}"
            )
        return done

    def _prepare_repository(self) -> None:
        if not self.path.exists():
            try:
                self.path.mkdir(parents=True)
            except OSError as exc:
                raise GovernanceError(
                    f"cannot make the witness folder {self.path}: {exc}"
                ) from None
        if not (self.path / ".git").exists():
            inside = self._git("rev-parse", "--show-toplevel", check=False)
            if inside.returncode == 0:
                raise GovernanceError(
                    f"{self.path} is inside the git repository {inside.stdout.strip()}; "
                    "checkpoints go to a repository of their own: give an empty folder or "
                    "a repository's top folder"
                )
            if any(self.path.iterdir()):
                raise GovernanceError(
                    f"{self.path} is neither a git repository nor empty; give an empty "
                    "folder (a repository is made there) or the top of a repository"
                )
            self._git("init", "-q")

    def _commit(self, target: Path, checkpoint: Checkpoint, signer: str) -> str:
        relative = target.relative_to(self.path).as_posix()
        self._git("add", "--", relative)
        if self._git("diff", "--cached", "--quiet", "--", relative, check=False).returncode == 0:
            # The same checkpoint (same size, root and second) is committed already.
            return self._git("rev-parse", "HEAD").stdout.strip()
        self._git(
            "-c", f"user.name={signer}",
            "-c", f"user.email={signer}@pipetrail.invalid",
            "-c", "commit.gpgsign=false",
            "commit", "-q", "--no-verify",
            "-m", f"checkpoint {checkpoint.origin} {checkpoint.size}",
            "--", relative,
        )  # fmt: skip
        return self._git("rev-parse", "HEAD").stdout.strip()

    def add_key(self, name: str, key: PublicKey) -> str | None:
        """Add ``name``'s key to the ``keys`` file when it names no key for ``name``.

        Returns:
            None, or a warning when the file names another key for ``name``.
        """
        path = self.path / KEYS_FILE
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        listed = [k for n, k in parse_keys(text, where=str(path)) if n == name]
        if any(k.raw == key.raw for k in listed):
            return None
        if listed:
            return (
                f"{path} lists another key for {name!r}: checkpoints signed with the current "
                "key verify only once it is added there (and given to auditors)"
            )
        with path.open("a", encoding="utf-8") as out:
            out.write(("" if not text or text.endswith("\n") else "\n") + f"{name} {key.text}\n")
        if self.git:
            self._git("add", "--", KEYS_FILE)
            self._git(
                "-c", f"user.name={name}", "-c", f"user.email={name}@pipetrail.invalid",
                "-c", "commit.gpgsign=false", "commit", "-q", "--no-verify",
                "-m", f"key of {name}", "--", KEYS_FILE,
            )  # fmt: skip
        return None

    # -- reading ---------------------------------------------------------------------
    def keys(self) -> list[tuple[str, PublicKey]]:
        """The keys listed in the location's ``keys`` file (none if it has none)."""
        path = self.path / KEYS_FILE
        if not path.is_file():
            return []
        return parse_keys(_read(path), where=str(path))

    def notes(self) -> list[FoundNote]:
        """Every checkpoint note kept here (for git: in any commit, and the work tree).

        Raises:
            GovernanceError: the location does not exist or cannot be read.
        """
        if not self.path.is_dir():
            raise GovernanceError(f"no checkpoint folder or repository at {self.path}")
        found: dict[str, FoundNote] = {}
        for file in sorted(self.path.glob(f"*{SUFFIX}")):
            text = _read(file)
            found.setdefault(text, FoundNote(str(file), text))
        if self.git:
            for note in self._history():
                found.setdefault(note.text, note)
        return sorted(found.values(), key=lambda n: n.where)

    def _history(self) -> list[FoundNote]:
        log = self._git(
            "log", "--all", "--format=@%H", "--name-only", "--diff-filter=A",
            "--no-renames", "--", f"*{SUFFIX}", check=False,
        )  # fmt: skip
        if log.returncode != 0:
            return []  # a repository without commits yet
        wanted: list[str] = []
        commit = ""
        for line in log.stdout.splitlines():
            if line.startswith("@"):
                commit = line[1:]
            elif line.strip():
                wanted.append(f"{commit}:{line}")
        if not wanted:
            return []
        batch = subprocess.run(
            ["git", "-C", str(self.path), "cat-file", "--batch"],
            input="\n".join(wanted).encode() + b"\n",
            capture_output=True,
            env=_git_env(),
            check=False,
        )
        return _parse_batch(batch.stdout, wanted)


def _parse_batch(out: bytes, wanted: list[str]) -> list[FoundNote]:
    notes, at = [], 0
    for name in wanted:
        end = out.index(b"\n", at)
        header = out[at:end].split()
        at = end + 1
        if len(header) != 3:
            continue  # "missing"
        size = int(header[2])
        body = out[at : at + size]
        at += size + 1
        if size <= _MAX_FILE:
            commit, _, path = name.partition(":")
            notes.append(
                FoundNote(f"{path} (commit {commit[:12]})", body.decode("utf-8", "replace"))
            )
    return notes


def _read(path: Path) -> str:
    try:
        with path.open("rb") as f:
            data = f.read(_MAX_FILE + 1)
    except OSError as exc:
        raise GovernanceError(f"cannot read {path}: {exc}") from None
    return data.decode("utf-8", "replace")
