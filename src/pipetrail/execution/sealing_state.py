"""What a process keeps to read sealed content, in step with re-encryptions made elsewhere.

A project keeps its data keys unwrapped, and the map of the sealed objects a
re-encryption replaced (:func:`~pipetrail.ledger.references.resealed_blobs`), for as
long as it is open: unwrapping and scanning the ledger on every read would cost more
than the read. A long-lived process (``pipetrail serve``, a notebook) must still see a
re-encryption another process made (``pipetrail keys rotate --reencrypt``,
docs/adr/0025-reencryption.md): the new objects are sealed with a data key it did not
unwrap, and once ``pipetrail gc`` has run the objects its map does not know are gone.

Each use checks, cheaply, whether what it keeps is still current:

* the replacement map is kept with the ledger head it was read at (one indexed row);
  when the head moved, only the events after it are read (a range of the primary key),
  and the replacements they record are added;
* the keys are kept with the keyring's signature: the keyring file's stat (a re-write
  renames a new file into place), or for a keyring kept in the ledger the ledger head.
  When it changed, the keyring is read again and the keys are unwrapped again only if
  its data keys changed (a new pending key, a finished re-encryption). Rotating only the
  key encryption key changes no data key: the keys kept stay, so a process whose key
  provider still holds only the old key encryption key keeps reading.

A keyring that is gone is never made again behind the project's back: only a project
that holds nothing sealed or keyed gets a first one (:func:`~pipetrail.store.keyring.open_keys`
asks :meth:`SealingState._sealed_before`: keys this process opened before, or what the
ledger records, :func:`~pipetrail.ledger.event_reads.sealed_content`). Deleted under a
running server, the keyring makes its next sealed write fail, naming the file to restore.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.ledger.queries import Reader
    from pipetrail.store.keyring import EncryptionSettings
    from pipetrail.store.sealed import SealingKeys

__all__ = ["SealingState"]


def _ring_shape(ring: dict[str, Any]) -> tuple[str, frozenset[str], bool]:
    """What of a keyring decides the unwrapped keys: current id, every id, a digest key."""
    entries = [*ring["data_keys"], *([ring["pending"]] if "pending" in ring else [])]
    ids = frozenset(str(e["id"]) for e in entries)
    return str(ring["data_keys"][0]["id"]), ids, "digest_key" in ring


def _keys_shape(keys: SealingKeys) -> tuple[str, frozenset[str], bool]:
    return keys.current, frozenset(keys.data_keys), keys.digest_key is not None


class SealingState:
    """A project's unwrapped keys and replacement map, followed as the ledger moves.

    Args:
        settings: the project's ``[encryption]`` settings (read once, on first use).
        reader: the project's ledger reader.
    """

    def __init__(
        self, settings: Callable[[], EncryptionSettings], reader: Callable[[], Reader]
    ) -> None:
        self._settings_of = settings
        self._reader_of = reader
        self._settings: EncryptionSettings | None = None
        self._keys: SealingKeys | None = None
        self._keys_mark: object = None
        self._moved: dict[str, str] | None = None
        self._moved_seq = 0
        # Keys were opened here once: a keyring missing later was lost (kept by forget()).
        self._opened = False

    def settings(self) -> EncryptionSettings:
        """The ``[encryption]`` settings (read once)."""
        if self._settings is None:
            self._settings = self._settings_of()
        return self._settings

    def _keyring_mark(self, settings: EncryptionSettings) -> object:
        """What changes whenever the keyring is written again."""
        if settings.in_ledger:
            from pipetrail.ledger.references import head_seq

            return head_seq(self._reader_of())
        try:
            st = os.stat(settings.keyring)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def keys(self, *, create: bool = False) -> SealingKeys:
        """The data keys, unwrapped again when the keyring's data keys changed.

        Raises:
            StoreError: no keyring (and not ``create``), or a key the provider lacks.
            IntegrityError: a data key does not unwrap (wrong key encryption key).
        """
        from pipetrail.store.keyring import open_keys

        settings = self.settings()
        mark = self._keyring_mark(settings)  # before reading: a later write is seen next time
        if self._keys is not None and mark != self._keys_mark:
            ring = settings.keyring_holder().read()
            if ring is None or _ring_shape(ring) != _keys_shape(self._keys):
                self._keys = None
        if self._keys is None:
            self._keys = open_keys(settings, create=create, sealed_before=self._sealed_before)
            self._opened = True
            if mark is None:  # made just now: the next use reads it (a deletion is then seen)
                mark = object()
        self._keys_mark = mark
        return self._keys

    def _sealed_before(self) -> str | None:
        """What the project holds under its keys, asked only when its keyring is missing."""
        from pipetrail.ledger.event_reads import sealed_content

        held = sealed_content(self._reader_of())
        if held is None and self._opened:
            return "content sealed by this process (it opened the keyring before)"
        return held

    def moved(self) -> dict[str, str]:
        """Each sealed object a re-encryption replaced -> the object holding it now."""
        # Imported here: a command that reads nothing sealed never loads the ledger scans.
        from pipetrail.ledger.references import head_seq, resealed_blobs, resealed_since

        reader = self._reader_of()
        head = head_seq(reader)  # before reading: events after it are read again next time
        if self._moved is None or head < self._moved_seq:
            self._moved = resealed_blobs(reader)
        elif head != self._moved_seq:
            self._moved = resealed_since(reader, self._moved, self._moved_seq)
        self._moved_seq = head
        return self._moved

    def forget(self) -> None:
        """Drop everything kept: the next use reads the settings and the keyring again."""
        self._settings = None
        self._keys = None
        self._keys_mark = None
        self._moved = None
        self._moved_seq = 0
