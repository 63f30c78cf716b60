"""The ``folder`` serializer: a ``pathlib.Path`` to a directory, stored file by file.

Owns the folder manifest. Every regular file is stored as its own object; the manifest is
canonical JSON ``{"<relative posix path>": {"digest": ..., "size": ...}}`` stored as one
more object, and the artifact's digest is the manifest's digest, so two folders with the
same files (names and bytes) have the same digest wherever they live. Empty folders and
file modes are not recorded.

Symlinks are followed only when they point inside the folder; a link to anything outside
(or a link cycle) raises :class:`~pipetrail.errors.SerializationError`, so an artifact can
never silently capture files it does not own. Loading copies the files into a new temp
folder (under :func:`~pipetrail.store.serializers.base.copy_parent` when one is set) or a
caller-given empty one, and verifies each file's digest while copying.

Imports only ``pipetrail.hashing``, ``pipetrail.errors`` and the serializer base.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pipetrail.errors import IntegrityError, SerializationError
from pipetrail.hashing import Hasher, canonical_json
from pipetrail.store.serializers.base import FORMAT_VERSION_KEY, StoredArtifact, copy_parent

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pipetrail.store.base import ContentStore

__all__ = ["FolderSerializer"]

_CHUNK = 1024 * 1024


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _walk(root: str, folder: str, prefix: str, active: frozenset[str]) -> Iterator[tuple[str, str]]:
    """Yield ``(relative posix path, filesystem path)`` of every file, sorted by name."""
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        rel = f"{prefix}{entry.name}"
        if entry.is_symlink():
            target = os.path.realpath(entry.path)
            if not _inside(target, root):
                raise SerializationError(
                    f"Folder artifact {root!r} contains a symlink {rel!r} pointing outside it "
                    f"(to {target!r}); copy the target into the folder or remove the link."
                )
            if os.path.isdir(target):
                if target in active:
                    raise SerializationError(
                        f"Folder artifact {root!r} contains a symlink cycle at {rel!r}; "
                        "remove the link."
                    )
                yield from _walk(root, target, rel + "/", active | {target})
            elif os.path.isfile(target):
                yield rel, target
            else:
                raise SerializationError(
                    f"Folder artifact {root!r} contains a broken symlink {rel!r}; remove it."
                )
        elif entry.is_dir(follow_symlinks=False):
            yield from _walk(root, entry.path, rel + "/", active | {os.path.realpath(entry.path)})
        elif entry.is_file(follow_symlinks=False):
            yield rel, entry.path
        else:
            raise SerializationError(
                f"Folder artifact {root!r} contains {rel!r}, which is neither a file nor a "
                "folder (socket, FIFO or device); remove it before the step ends."
            )


def _safe_relative(rel: str, digest: str) -> PurePosixPath:
    path = PurePosixPath(rel)
    if not rel or path.is_absolute() or any(part in ("", ".", "..") for part in rel.split("/")):
        raise SerializationError(
            f"Folder manifest {digest} holds the unsafe path {rel!r}; refusing to write outside "
            "the target folder. The manifest was not written by pipetrail: do not load it."
        )
    return path


class FolderSerializer:
    """Stores every file under a directory, plus a manifest (see the module docstring)."""

    name = "folder"
    version = 1

    def handles(self, value: Any) -> bool:
        """Return whether ``value`` is a ``Path`` to an existing directory."""
        return isinstance(value, Path) and value.is_dir()

    def dump(self, value: Any, store: ContentStore) -> StoredArtifact:
        """Store the folder's files and manifest.

        Raises:
            SerializationError: the folder holds a symlink pointing outside it, a link
                cycle, a broken link, or a special file.
        """
        root = os.path.realpath(value)
        manifest: dict[str, dict[str, Any]] = {}
        total = 0
        for rel, path in _walk(root, root, "", frozenset({root})):
            digest, size = store.put_file(Path(path))
            manifest[rel] = {"digest": digest, "size": size}
            total += size
        data = canonical_json(manifest).encode("utf-8")
        digest = store.put_bytes(data)
        return StoredArtifact(
            digest=digest,
            blob=digest,
            serializer=self.name,
            type_name="pathlib.Path",
            size=len(data),
            meta={"files": len(manifest), "bytes": total, FORMAT_VERSION_KEY: self.version},
        )

    def load(self, record: StoredArtifact, store: ContentStore) -> Path:
        """Copy the folder into a new temp folder (owned by the caller) and return it."""
        import tempfile  # here, not at import: a run that loads no folder does not pay

        folder = tempfile.mkdtemp(prefix="pipetrail-folder-", dir=copy_parent())
        return self.materialize(record, store, Path(folder))

    def materialize(self, record: StoredArtifact, store: ContentStore, target: Path) -> Path:
        """Copy the stored folder into ``target`` (created if missing; must be empty).

        Raises:
            SerializationError: ``target`` is not empty, or the manifest is unsafe.
            IntegrityError: a stored file does not match the digest in the manifest.
        """
        target = Path(target)
        target.mkdir(parents=True, exist_ok=True)
        if any(target.iterdir()):
            raise SerializationError(
                f"Cannot load folder artifact {record.digest} into {os.fspath(target)!r}: the "
                "folder is not empty; pass an empty or new folder."
            )
        manifest = json.loads(store.get_bytes(record.blob))
        for rel, entry in sorted(manifest.items()):
            dest = target.joinpath(*_safe_relative(rel, record.digest).parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            hasher = Hasher()
            with store.open(entry["digest"]) as src, open(dest, "xb") as out:
                while chunk := src.read(_CHUNK):
                    hasher.update(chunk)
                    out.write(chunk)
            if hasher.digest() != entry["digest"]:
                raise IntegrityError(
                    f"File {rel!r} of folder artifact {record.digest} does not match its "
                    f"digest {entry['digest']}; run verify_store() to quarantine the corrupt "
                    "object, then re-run the step that produced it."
                )
        return target
