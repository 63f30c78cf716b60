"""Re-encryption: every sealed object rewritten under a new project data key, recorded.

``pipetrail keys rotate --reencrypt`` (:func:`reencrypt_project`), in an order that a
crash at any point leaves readable and a rerun finishes (docs/adr/0025-reencryption.md):

1. the keyring gets a *pending* data key, and the key of keyed digests is written apart
   from the data keys (so every recorded digest stays valid); the pending key opens but
   does not seal yet;
2. each sealed object (sealed outputs, copies of sensitive sources, sealed step logs,
   on a local or S3 store) is decrypted and sealed again under the pending key, and its
   new object recorded by an ``artifact.recorded`` event carrying ``resealed_from`` (the
   old object), in batches: the record switches to the new object only once it is
   stored;
3. a ``keys.rotated`` event records the re-encryption (``reencrypted``, ``objects``);
4. the keyring keeps the pending key alone: the old data keys are gone, and nothing
   sealed from then on uses them. The objects they sealed are no longer needed by the
   record; ``pipetrail gc`` removes them.

A rerun after a crash finds the pending key, skips the objects already sealed with it,
and finishes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.errors import NotFoundError, StoreError
from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.event_reads import sealed_artifact_rows
from pipetrail.store.keyring import (
    begin_reencryption,
    finish_reencryption,
    pending_reencryption,
)
from pipetrail.store.sealed import SealedStore, header_key_id

if TYPE_CHECKING:
    from pipetrail.execution.project import Project
    from pipetrail.store import ContentStore
    from pipetrail.store.sealed import SealingKeys

__all__ = ["reencrypt_project"]

_BATCH = 200  # objects sealed again per ledger append
_HEADER = 64  # bytes read to find the data key id of a sealed object's header


def reencrypt_project(project: Project, *, old_variable: str | None = None) -> dict[str, Any]:
    """Seal every sealed object again under a new data key; retire the old data keys.

    With the ``file`` provider, or ``old_variable`` given, the key encryption key is
    rotated first (:func:`~pipetrail.execution.key_rotation.rotate_project_keys`, its own
    ``keys.rotated`` event); a wrong old key is refused there and nothing is changed.

    Returns:
        The ``keys.rotated`` payload of the re-encryption (``reencrypted``, ``objects``,
        ``new_data_key``, ``retired_data_keys``, ``missing``, ``resumed``...).

    Raises:
        StoreError: a run is still running, no keyring, a key the provider does not hold,
            or a sealed object that does not decrypt (nothing switched to the new key).
    """
    from pipetrail.execution.key_rotation import rotate_project_keys
    from pipetrail.store.key_providers import KeyFile

    running = project.reader().running_runs()
    if running:
        names = ", ".join(str(r["run_id"]) for r in running[:5])
        raise StoreError(
            f"cannot re-encrypt while runs are running ({names}): they hold the current data "
            "key and would seal with it; wait for them to end (or `pipetrail runs` marks a "
            "dead one crashed), then run `pipetrail keys rotate --reencrypt` again"
        )
    settings = project.encryption()
    resumed = pending_reencryption(settings) is not None
    kek_rotation = None
    if not resumed and (old_variable or isinstance(settings.key_provider(), KeyFile)):
        kek_rotation = rotate_project_keys(project, old_variable=old_variable)
    opener, sealing = begin_reencryption(settings)
    project.forget_keys()
    count, missing = _reseal_all(project, opener, sealing)
    payload: dict[str, Any] = {
        "old_keks": kek_rotation["old_keks"] if kek_rotation else [],
        "new_kek": kek_rotation["new_kek"] if kek_rotation else "",
        "data_keys": [sealing.current],
        "provider": settings.provider,
        "retired": bool(kek_rotation and kek_rotation["retired"]),
        "reencrypted": True,
        "objects": count,
        "missing": missing,
        "new_data_key": sealing.current,
        "retired_data_keys": sorted(k for k in opener.data_keys if k != sealing.current),
        "resumed": resumed,
    }
    project.ledger.append([EventDraft(EventKind.KEYS_ROTATED, payload)])
    finish_reencryption(settings)
    project.forget_keys()
    # Anything a writer sealed with an old key since the pass above is sealed again now,
    # while the old keys are still in memory.
    late, _ = _reseal_all(project, opener, sealing)
    payload["objects"] += late
    return payload


def _reseal_all(project: Project, opener: SealingKeys, sealing: SealingKeys) -> tuple[int, int]:
    """Seal again every recorded sealed object not sealed with ``sealing``'s key.

    Returns:
        ``(objects sealed again, recorded objects missing from the store)``.
    """
    store = project.store
    target = SealedStore(store, sealing)
    reader = project.reader()
    done = missing = 0
    drafts: list[EventDraft] = []
    for digest, blob in sealed_artifact_rows(reader):
        try:
            kid = header_key_id(_header(store, blob))
        except NotFoundError:
            missing += 1
            continue
        if kid == sealing.current:
            continue
        # A recorded sealed object without a sealed header is damaged: sealing it again
        # reads it verified, which names it (it is not passed over as done).
        record = reader.artifact(digest)
        if record is None or not (record.get("meta") or {}).get("sealed"):
            continue
        try:
            new_blob, _ = target.reseal(blob, opener)
        except StoreError as exc:  # IntegrityError included
            raise StoreError(
                f"cannot re-encrypt sealed artifact {digest} (object {blob}): {exc}; "
                "nothing was switched to the new key for it; `pipetrail store verify` "
                "checks every sealed object"
            ) from None
        drafts.append(_resealed(record, new_blob, blob, sealing.current))
        done += 1
        if len(drafts) >= _BATCH:
            store.sync()
            project.ledger.append(drafts)
            drafts = []
    if drafts:
        store.sync()
        project.ledger.append(drafts)
    return done, missing


def _header(store: ContentStore, blob: str) -> bytes:
    """The start of a sealed object, where its header names the data key that sealed it.

    Read alone where the store can (``peek``: no hash of the whole object, no download
    of it), so that a rerun skips what is already sealed with the new key at the cost of
    a header. Not verified, and need not be: the header is bound into every chunk's
    authentication, so a changed one makes the object fail its own reads and
    ``store verify``, whatever this pass decides from it; an object sealed again is read
    verified (:meth:`~pipetrail.store.sealed.SealedStore.reseal`).
    """
    peek = getattr(store, "peek", None)
    if peek is not None:
        return bytes(peek(blob, _HEADER))
    with store.open(blob) as raw:
        return raw.read(_HEADER)


def _resealed(record: dict[str, Any], blob: str, old_blob: str, data_key: str) -> EventDraft:
    """The ``artifact.recorded`` event describing ``record`` under its new sealed object."""
    run_id = record.get("first_run_id")
    payload = {
        "digest": record["digest"],
        "blob": blob,
        "serializer": record["serializer"],
        "type_name": record["type_name"],
        "size": record["size"],
        "meta": record.get("meta") or {},
        "role": record["role"],
        "run_id": run_id,
        "step_run_id": record.get("first_step_run_id"),
        "resealed_from": old_blob,
        "data_key": data_key,
    }
    return EventDraft(EventKind.ARTIFACT_RECORDED, payload, run_id=run_id)
