"""The project keyring kept in the ledger (``[encryption] keyring = "ledger"``).

A team sharing a ledger database (PostgreSQL) then shares the keyring with it: only the
key encryption key (KEK) has to be distributed, through the ``env`` provider or a KMS
plugin. The keyring holds wrapped keys only (docs/data-handling.md); each change appends
a ``keys.keyring`` event carrying the whole document, and the newest one is the keyring.
A keyring file the project had before (``.pipetrail/keyring.json``) is imported into the
ledger the first time the ledger holds none. The first keyring is appended under the
ledger's write lock, only if none appeared meanwhile, so two processes sealing their first
sensitive content at once end with one data key.

What the chain adds: a changed ``keys.keyring`` event is caught by ``pipetrail audit
verify`` like any other; a keyring written into the database without the KEK cannot
wrap a key the provider unwraps, so it can deny reads but not make pipetrail seal with a
key of someone else's choosing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.event_reads import newest_keyring
from pipetrail.store.keyring import FileKeyring, KeyringExists, check_keyring

if TYPE_CHECKING:
    from pathlib import Path

    from pipetrail.ledger import Ledger
    from pipetrail.ledger.driver import Driver

__all__ = ["LedgerKeyring"]


class LedgerKeyring:
    """The keyring as the newest ``keys.keyring`` event of the ledger.

    Args:
        ledger: the project's ledger.
        import_from: a keyring file to import when the ledger holds no keyring yet.
    """

    def __init__(self, ledger: Ledger, import_from: Path) -> None:
        self._ledger = ledger
        self._import_from = import_from

    @property
    def where(self) -> str:
        """How messages name the place."""
        return "in the ledger (keys.keyring events)"

    def read(self) -> dict[str, Any] | None:
        """The newest keyring of the ledger (a keyring file imported first), or None."""
        ring = newest_keyring(self._ledger.reader())
        if ring is not None:
            return check_keyring(ring, self.where)
        found = FileKeyring(self._import_from).read()
        if found is None:
            return None
        try:
            self.write(found, first=True)
        except KeyringExists:
            return self.read()
        return found

    def write(self, ring: dict[str, Any], *, first: bool = False) -> None:
        """Append the keyring; with ``first``, only if the ledger holds none yet.

        Raises:
            KeyringExists: ``first``, and another process appended a keyring meanwhile.
        """

        def none_yet(db: Driver) -> None:
            if newest_keyring(db) is not None:
                raise KeyringExists("another process wrote the project keyring meanwhile")

        self._ledger.append(
            [EventDraft(EventKind.KEYS_KEYRING, {"keyring": ring})],
            precondition=none_yet if first else None,
        )
