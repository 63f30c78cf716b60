"""The ``file`` serializer: a ``pathlib.Path`` to a regular file a step wrote.

Owns storing one file's bytes and handing back a read-only copy. Loading from a local
store returns the object's own (read-only) file; from any other store, the bytes are
written to a new temp folder under the original file name, which the caller then owns
(created under :func:`~pipetrail.store.serializers.base.copy_parent` when one is set).
Imports only ``pipetrail.errors`` and the serializer base.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetrail.errors import SerializationError
from pipetrail.store.serializers.base import FORMAT_VERSION_KEY, StoredArtifact, copy_parent

if TYPE_CHECKING:
    from pipetrail.store.base import ContentStore

__all__ = ["FileSerializer"]


class FileSerializer:
    """Stores the bytes of the file a ``Path`` points to."""

    name = "file"
    version = 1

    def handles(self, value: Any) -> bool:
        """Return whether ``value`` is a ``Path`` that is not a directory."""
        return isinstance(value, Path) and not value.is_dir()

    def dump(self, value: Any, store: ContentStore) -> StoredArtifact:
        """Store the file's bytes.

        Raises:
            SerializationError: the path does not exist or is not a regular file.
        """
        path = Path(value)
        if not path.is_file():
            raise SerializationError(
                f"Path {os.fspath(path)!r} is not an existing regular file; return a Path to "
                "a file the step wrote (or to a folder) before the step ends."
            )
        digest, size = store.put_file(path)
        return StoredArtifact(
            digest=digest,
            blob=digest,
            serializer=self.name,
            type_name="pathlib.Path",
            size=size,
            meta={"name": path.name, FORMAT_VERSION_KEY: self.version},
        )

    def load(self, record: StoredArtifact, store: ContentStore) -> Path:
        """Return a path to a read-only copy of the stored file."""
        local = store.local_path(record.blob)
        if local is not None:
            return local
        # Imported here, where a copy is made: a run that loads no file output (a cached
        # re-run) does not pay for shutil and tempfile.
        import shutil
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="pipetrail-file-", dir=copy_parent()))
        name = Path(str(record.meta.get("name", ""))).name
        target = folder / (name if name not in ("", ".", "..") else "artifact")
        with store.open(record.blob) as src, open(target, "xb") as dst:
            shutil.copyfileobj(src, dst)
        target.chmod(0o444)
        return target
