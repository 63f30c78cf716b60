"""What every request of one server shares: the project folder, settings, open projects.

A :class:`pipetrail.read.Project` holds database connections that must stay in the
thread that opened them (SQLite), and FastAPI runs synchronous routes on a pool of
threads, so each thread opens the project once and keeps it (:meth:`ServerContext.project`).
Nothing read from a project (a reader, a run) may be handed to another thread: an async
route does its reading inside one ``run_in_threadpool`` call. Several worker processes
each have their own.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipetrail.governance.verified import VerifiedCache
from pipetrail.server.audit_cache import DEFAULT_MAX_AGE, ChainCheckCache

if TYPE_CHECKING:
    from pipetrail.governance.keys import Signer
    from pipetrail.governance.state import GovernanceState
    from pipetrail.read import Project

__all__ = ["DEFAULT_MAX_BODY", "ProcessVerifiedCache", "ServerContext", "ServerSettings"]

DEFAULT_MAX_BODY = 1 << 20  # 1 MiB: governance forms and JSON bodies are small


@dataclass(frozen=True)
class ServerSettings:
    """How one server runs.

    Attributes:
        root: the project folder.
        signing_keys: a key folder (``NAME.key`` files under ``keys/``, as
            ``PIPETRAIL_HOME`` lays them out) whose keys the server may sign with for
            their owners; None: the server signs for nobody.
        max_body: the largest request body accepted, in bytes.
        session_cookie: the name of the browser session cookie.
        audit_max_age: seconds the audit page's full chain check is kept while no event
            is appended (:mod:`pipetrail.server.audit_cache`); 0 checks on every load.
    """

    root: Path
    signing_keys: Path | None = None
    max_body: int = DEFAULT_MAX_BODY
    session_cookie: str = "pipetrail_session"
    audit_max_age: float = DEFAULT_MAX_AGE


class ProcessVerifiedCache(VerifiedCache):
    """The governance events this server process verified, kept in memory only.

    Every request folds the governance events to learn the caller's roles; an event whose
    every stored field is unchanged since this process checked its hash and signature is
    not checked again (:mod:`pipetrail.governance.verified`). Nothing is written: a new
    process checks everything once.
    """

    def __init__(self) -> None:
        self.path = Path()
        self._known: set[bytes] = set()
        self._new: list[bytes] = []
        self._lock = threading.Lock()

    def add(self, fingerprint: bytes) -> None:
        """Remember an event just verified in full."""
        with self._lock:
            self._known.add(fingerprint)

    def save(self) -> None:
        """Nothing to write: the cache lives as long as the process."""


@dataclass
class ServerContext:
    """The settings, each thread's open project, the process's verified events and checks."""

    settings: ServerSettings
    verified: ProcessVerifiedCache = field(default_factory=ProcessVerifiedCache)
    chain_checks: ChainCheckCache = field(init=False)
    _local: threading.local = field(default_factory=threading.local)
    _opened: list[Project] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.chain_checks = ChainCheckCache(self.settings.audit_max_age)

    def project(self) -> Project:
        """This thread's open project (opened on first use)."""
        found: Project | None = getattr(self._local, "project", None)
        if found is None:
            from pipetrail.read import Project

            found = Project.open(self.settings.root)
            self._local.project = found
            with self._lock:
                self._opened.append(found)
        return found

    def governance_state(self) -> GovernanceState:
        """The governance state now (one query; signatures checked once per process)."""
        from pipetrail.governance.state import read_state

        return read_state(self.project().reader(), self.verified)

    def signer_for(self, user: str) -> Signer | None:
        """``user``'s signing key from the server's key folder, or None when it has none."""
        folder = self.settings.signing_keys
        if folder is None or not (folder / "keys" / f"{user}.key").is_file():
            return None
        from pipetrail.governance.keys import load_signer

        return load_signer(user, folder=folder)

    def close(self) -> None:
        """Close every project the threads opened (at shutdown)."""
        with self._lock:
            opened, self._opened = self._opened, []
        for project in opened:
            # A SQLite connection may be closed only by the thread that opened it; one that
            # refuses is released with the process.
            with contextlib.suppress(Exception):
                project.close()
