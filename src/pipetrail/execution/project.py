"""A project's open stores: the ledger, the content store and the serializer registry.

Stores open lazily, so read-only commands that need only a reader never import
SQLAlchemy. Backends are objects that can be passed in (tests pass a MemoryStore or a
PostgreSQL ledger); names in configuration resolve here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipetrail.capture import current_owner
from pipetrail.config import ProjectConfig, load_config
from pipetrail.errors import StoreError
from pipetrail.execution.sealing_state import SealingState

if TYPE_CHECKING:
    from pathlib import Path

    from pipetrail.core.access import AccessGate
    from pipetrail.ledger.ledger import Ledger
    from pipetrail.ledger.queries import Reader
    from pipetrail.store import ContentStore, SerializerRegistry, StoredArtifact
    from pipetrail.store.keyring import EncryptionSettings
    from pipetrail.store.sealed import SealingKeys

__all__ = ["Project"]


class Project:
    """The stores of one project folder.

    Args:
        config: resolved settings (see :func:`pipetrail.config.load_config`).
        store: a content store to use instead of the configured one.
        ledger: a ledger to use instead of the configured one.
        registry: a serializer registry to use instead of the default one.
    """

    def __init__(
        self,
        config: ProjectConfig,
        *,
        store: ContentStore | None = None,
        ledger: Ledger | None = None,
        registry: SerializerRegistry | None = None,
    ) -> None:
        self.config = config
        self._store = store
        self._ledger = ledger
        self._registry = registry
        self._reader: Reader | None = None
        # The unwrapped keys and the objects a re-encryption replaced, kept in step
        # with re-encryptions made by other processes.
        self._sealing = SealingState(self.encryption, self.reader)
        self._gate: AccessGate | None = None

    @classmethod
    def discover(
        cls, start: Path | None = None, *, must_exist: bool = False, writes: bool | None = None
    ) -> Project:
        """Open the project containing ``start`` (default: the working directory).

        Args:
            start: the folder to search from.
            must_exist: refuse a folder outside any project (read-only commands) rather
                than taking it as a project with the default settings.
            writes: the caller records events (see :func:`~pipetrail.config.load_config`).

        Raises:
            ProjectError: ``pipetrail.toml`` is malformed, or ``must_exist`` and no
                project was found.
        """
        return cls(load_config(start, must_exist=must_exist, writes=writes))

    @classmethod
    def at(cls, root: Path) -> Project:
        """Open the project rooted at ``root``."""
        return cls(load_config(root=root))

    @property
    def root(self) -> Path:
        """The project folder."""
        return self.config.root

    @property
    def store(self) -> ContentStore:
        """The content store (opened on first use)."""
        if self._store is None:
            from pipetrail.execution.store_open import open_store

            self._store = open_store(self.config)
        return self._store

    @property
    def ledger(self) -> Ledger:
        """The ledger (connected, created or migrated on first use)."""
        if self._ledger is None:
            from pipetrail.ledger.ledger import Ledger

            self._ledger = Ledger.open(self.config.metadata_url, actor=current_owner())
        return self._ledger

    @property
    def registry(self) -> SerializerRegistry:
        """The serializer registry."""
        if self._registry is None:
            from pipetrail.store import default_registry

            self._registry = default_registry()
        return self._registry

    def sealing_keys(self, *, create: bool = False) -> SealingKeys:
        """The project's data keys, unwrapped with the configured key provider.

        Kept while the keyring's data keys stay the same: a re-encryption made by
        another process is followed (:mod:`pipetrail.execution.sealing_state`).

        Args:
            create: make the keyring (and the default key file) if there is none yet.

        Raises:
            StoreError: no keyring, or a key provider that does not hold the key.
            IntegrityError: a data key does not unwrap (wrong key encryption key).
        """
        return self._sealing.keys(create=create)

    def encryption(self) -> EncryptionSettings:
        """The ``[encryption]`` settings, with the ledger as the keyring's place if so set.

        Raises:
            StoreError: the ``[encryption]`` table is malformed.
        """
        import dataclasses

        from pipetrail.store.keyring import EncryptionSettings

        settings = EncryptionSettings.load(self.root, self.config.state_dir)
        if not settings.in_ledger:
            return settings
        from pipetrail.execution.ledger_keyring import LedgerKeyring

        return dataclasses.replace(settings, holder=LedgerKeyring(self.ledger, settings.keyring))

    def forget_keys(self) -> None:
        """Drop the unwrapped keys: the next use reads the keyring again (it changed)."""
        self._sealing.forget()

    def store_for(
        self,
        record: StoredArtifact,
        *,
        action: str = "read",
        run_id: str | None = None,
        gate: AccessGate | None = None,
    ) -> ContentStore:
        """The store to load ``record`` through: decrypting when it is sealed.

        A sealed (sensitive) artifact is read only when the project's access gate allows
        it (:mod:`pipetrail.core.access`), and the read or its refusal is recorded.

        Args:
            record: the artifact to read.
            action: what reads it, for the record (``run``, ``get``, ``logs``, ``read``).
            run_id: the run reading it, if any.
            gate: the gate that decides and records this read (the server passes one
                for the authenticated caller); default: the project's, for the
                configured identity.

        Raises:
            PermissionDeniedError: the acting identity may not read it (recorded).
            StoreError: the keys cannot be opened.
        """
        if not record.meta.get("sealed"):
            return self.store
        from pipetrail.store.sealed import SealedStore

        if gate is None:
            if self._gate is None:
                from pipetrail.core.access import open_gate

                self._gate = open_gate(self)
            gate = self._gate
        gate.check(record, action=action, run_id=run_id)

        try:
            keys = self.sealing_keys()
        except StoreError as exc:
            raise StoreError(f"cannot read the sensitive artifact {record.digest}: {exc}") from None
        return SealedStore(self.store, keys, moved=self._sealing.moved())

    def reader(self) -> Reader:
        """Return a query helper: the open ledger's, or a cheap read-only one.

        For a SQLite project whose ledger is not open yet this reads through the stdlib
        ``sqlite3`` module without importing SQLAlchemy (fast command start-up).
        """
        if self._ledger is not None:
            return self._ledger.reader()
        if self._reader is None:
            url = self.config.metadata_url
            if not url.startswith("sqlite:///"):
                return self.ledger.reader()
            from pipetrail.ledger import open_reader

            self._reader = open_reader(url)
        return self._reader

    def close(self) -> None:
        """Release database connections."""
        self._sealing.forget()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._ledger is not None:
            self._ledger.close()
            self._ledger = None
