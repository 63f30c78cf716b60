"""Read and rewrite audit bundles member by member, for tampering tests."""

from __future__ import annotations

import io
import tarfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

Members = dict[str, bytes]


def read_members(bundle: Path) -> Members:
    """Every member of the bundle ``bundle``, by name, in archive order."""
    with tarfile.open(bundle) as archive:
        return {
            info.name: archive.extractfile(info).read()  # type: ignore[union-attr]
            for info in archive
        }


def write_members(members: Members, out: Path) -> Path:
    """Write ``members`` as a plain tar archive at ``out`` and return ``out``."""
    with tarfile.open(out, "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out
