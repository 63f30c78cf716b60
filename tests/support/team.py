"""A governed project for tests: one key folder per person and a Governance per act."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipetrail.governance.keys import create_key, load_signer
from pipetrail.governance.service import Governance

if TYPE_CHECKING:
    from pathlib import Path

    from pipetrail.execution.project import Project
    from pipetrail.governance.keys import PublicKey, Signer


class Team:
    """People acting on ``project``, each with keys under ``home / NAME``."""

    def __init__(self, project: Project, home: Path) -> None:
        self.project = project
        self.home = home

    def key(self, name: str) -> str:
        """Make a new key pair named ``name`` and return its public key text."""
        return create_key(name, folder=self.home / name).text

    def signer(self, name: str) -> Signer:
        """The signer of ``name``, whose key pair is made on first use."""
        if not (self.home / name / "keys" / f"{name}.key").exists():
            create_key(name, folder=self.home / name)
        return load_signer(name, folder=self.home / name)

    def pinned(self, name: str) -> tuple[str, PublicKey]:
        """``name`` and its public key, as a verifier pins them."""
        return name, self.signer(name).public_key

    def as_(self, name: str) -> Governance:
        """A Governance acting as ``name``, reading the ledger afresh."""
        return Governance(self.project, signer=self.signer(name))

    def events(self) -> int:
        """How many events the ledger holds."""
        return self.project.reader().event_count()
