"""Whole-store verification: re-hash every object and check that expected ones exist.

Owns :class:`StoreVerifyReport` and :func:`verify_store`. Works on any
:class:`~pipetrail.store.base.ContentStore`; corrupt objects are quarantined by the store's
own ``verify``. Imports only ``pipetrail.store.base`` and ``pipetrail.errors``; never
``ledger`` (callers pass the digests the ledger expects as plain strings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipetrail.errors import NotFoundError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pipetrail.store.base import ContentStore

__all__ = ["StoreVerifyReport", "verify_store"]


@dataclass(frozen=True)
class StoreVerifyReport:
    """Outcome of :func:`verify_store` (satisfies :class:`~pipetrail.store.base.VerifyResult`).

    Attributes:
        checked: how many stored objects were re-hashed.
        corrupt: digests whose bytes did not match (now quarantined), sorted.
        missing: expected digests with no object in the store, sorted. A digest reported
            as corrupt is not repeated here.
    """

    checked: int
    corrupt: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every object verified and every expected digest was found."""
        return not self.corrupt and not self.missing


def verify_store(store: ContentStore, expected: Iterable[str] = ()) -> StoreVerifyReport:
    """Re-hash every object in ``store`` and report corrupt and missing ones.

    Args:
        store: the store to check.
        expected: digests that must be present (for example every artifact the ledger
            records); those absent are reported in ``missing``.

    Returns:
        The report; ``report.ok`` is True when nothing is wrong.

    Raises:
        StoreError: the store could not be read.
    """
    # Snapshot first: verify() may move objects while we would still be listing them.
    checked = 0
    corrupt: list[str] = []
    for digest in list(store.iter_digests()):
        try:
            good = store.verify(digest)
        except NotFoundError:
            continue  # removed by someone else since it was listed
        checked += 1
        if not good:
            corrupt.append(digest)
    corrupt_set = set(corrupt)
    missing = {
        digest for digest in expected if digest not in corrupt_set and not store.exists(digest)
    }
    return StoreVerifyReport(checked=checked, corrupt=sorted(corrupt), missing=sorted(missing))
