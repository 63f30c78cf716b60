"""Rotating the project's key encryption key, recorded in the ledger.

:func:`rotate_project_keys` wraps every project data key under a new key encryption key
(:func:`pipetrail.store.keyring.rotate_keys`: no sealed object is rewritten, so every
recorded digest, cache entry and stored object stays valid), retires the old key, and
appends a ``keys.rotated`` event naming the key ids (never the keys).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.ledger import EventDraft, EventKind
from pipetrail.store.key_providers import EnvironmentKey
from pipetrail.store.keyring import rotate_keys

if TYPE_CHECKING:
    from pipetrail.execution.project import Project

__all__ = ["rotate_project_keys"]


def rotate_project_keys(project: Project, *, old_variable: str | None = None) -> dict[str, Any]:
    """Wrap the project's data keys under a new KEK, retire the old one, record it.

    Args:
        project: the project.
        old_variable: for the ``env`` provider, the environment variable holding the old
            key (the configured variable holds the new one).

    Returns:
        The ``keys.rotated`` payload: ``old_keks``, ``new_kek``, ``data_keys``,
        ``provider``, ``retired``.

    Raises:
        StoreError: no keyring, the old key is not available or wrong (nothing changed),
            or no new key is configured.
    """
    settings = project.encryption()
    old = EnvironmentKey(old_variable) if old_variable else None
    done = rotate_keys(settings, old=old)
    payload = {
        "old_keks": done.old_keks,
        "new_kek": done.new_kek,
        "data_keys": done.data_keys,
        "provider": settings.provider,
        "retired": done.retired,
    }
    project.ledger.append([EventDraft(EventKind.KEYS_ROTATED, payload)])
    return payload
