"""Reading an audit bundle's members, and verifying the content it carries (``--with-data``).

:func:`read_members` reads every member but the content into memory, refusing names that
would leave the bundle, links and repeated names (nothing is ever extracted).

Each ``data/<hex>`` member is streamed, never held whole (only a folder's manifest,
which the check of its files needs, is kept), and hashed with SHA-256 (checked against
the signed manifest's ``members``) and BLAKE3. The manifest's ``data`` section says what
each member is: the stored object's digest (``blob``), the artifacts stored as it,
whether it is sealed, and for a folder's file the folder's object and the file's path.
:func:`check_data` then ties each member to the ledger:

* plain content must hash to the object digest an ``artifact.recorded`` event of the
  bundle records (itself re-hashed and proven in the checkpoint); a folder's file must
  hash to the digest its folder's manifest lists, and that manifest to the recorded one;
* sealed (sensitive) content: the ledger records only a *keyed* digest, which nobody
  without the project's data key can recompute, and the encrypted object's digest. The
  member holds the plaintext, so it is checked against the BLAKE3 digest the signed
  manifest states for it, and the manifest's ``blob`` must be the object an
  ``artifact.recorded`` event records as sealed. Its tie to the ledger therefore rests on
  the signature of whoever wrote the bundle (docs/audit.md says so to the auditor).

Imports the standard library and the hashing module only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.hashing import Hasher

if TYPE_CHECKING:
    import tarfile

    from pipetrail.governance.bundle_check import BundleReport

__all__ = ["DATA_DIR", "Hashed", "check_data", "hash_data", "kept_members", "read_members"]

DATA_DIR = "data/"
_READ = 1 << 20


@dataclass(frozen=True)
class Hashed:
    """A streamed data member: its digests and size, and its bytes when kept."""

    sha256: str
    blake3: str
    size: int
    content: bytes | None = None


def kept_members(manifest: dict[str, Any]) -> set[str]:
    """The data members whose bytes the check needs: the manifests of folders."""
    entries = manifest.get("data")
    if not isinstance(entries, dict):
        return set()
    return {
        DATA_DIR + str(entry["folder"]).removeprefix("blake3:")
        for entry in entries.values()
        if isinstance(entry, dict) and entry.get("folder")
    }


def hash_data(
    archive: tarfile.TarFile, infos: list[tarfile.TarInfo], keep: set[str]
) -> dict[str, Hashed]:
    """Stream each data member, hashing it; keep the bytes of those named in ``keep``.

    Raises:
        tarfile.ReadError: a member is cut short (the caller reports a damaged archive).
    """
    import tarfile

    out: dict[str, Hashed] = {}
    for info in infos:
        stream = archive.extractfile(info)
        sha, b3, size = hashlib.sha256(), Hasher(), 0
        parts: list[bytes] | None = [] if info.name in keep else None
        if stream is not None:
            while block := stream.read(_READ):
                sha.update(block)
                b3.update(block)
                size += len(block)
                if parts is not None:
                    parts.append(block)
        if size != info.size:
            raise tarfile.ReadError(f"member {info.name!r} is cut short")
        content = b"".join(parts) if parts is not None else None
        out[info.name] = Hashed(sha.hexdigest(), b3.digest(), size, content)
    return out


def read_members(
    archive: tarfile.TarFile, max_member: int, max_members: int
) -> tuple[dict[str, bytes], list[tarfile.TarInfo], list[tuple[str, str]]]:
    """Every regular member's bytes by name, but the data members (streamed later).

    Returns the members, the data members' headers, and ``(element, message)`` problems
    with names or kinds of members (nothing is extracted: no name reaches the disk).

    Raises:
        tarfile.TarError: the archive is damaged (the caller reports it).
    """
    import tarfile

    members: dict[str, bytes] = {}
    data: list[tarfile.TarInfo] = []
    problems: list[tuple[str, str]] = []
    seen: set[str] = set()
    for count, info in enumerate(archive):
        if count >= max_members:
            problems.append(("archive", "holds too many members"))
            break
        name = info.name
        parts = name.split("/")
        if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in parts):
            problems.append(("archive", f"member name {name!r} leaves the bundle"))
            continue
        if not info.isreg():
            problems.append(("archive", f"member {name!r} is not a file"))
            continue
        if name in seen:
            problems.append(("archive", f"member {name!r} appears twice"))
            continue
        seen.add(name)
        if name.startswith(DATA_DIR):
            data.append(info)  # hashed as a stream, whatever its size
            continue
        if info.size > max_member:
            problems.append(("archive", f"member {name!r} is too large"))
            continue
        stream = archive.extractfile(info)
        content = stream.read() if stream is not None else b""
        if len(content) != info.size:
            raise tarfile.ReadError(f"member {name!r} is cut short")
        members[name] = content
    return members, data, problems


def _recorded(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Object digest -> the ``artifact.recorded`` payloads that record it."""
    found: dict[str, list[dict[str, Any]]] = {}
    for ev in events:
        if ev.get("kind") != "artifact.recorded":
            continue
        try:
            p = json.loads(ev["payload"])
        except (ValueError, TypeError):
            continue
        if isinstance(p, dict) and isinstance(p.get("blob"), str):
            found.setdefault(p["blob"], []).append(p)
    return found


def _sealed(payload: dict[str, Any]) -> bool:
    meta = payload.get("meta")
    return isinstance(meta, dict) and bool(meta.get("sealed"))


def _content_ok(entry: dict[str, Any], hashed: Hashed) -> bool:
    expected = entry.get("blake3") if entry.get("sealed") else entry.get("blob")
    return hashed.blake3 == expected


def _folders(entries: dict[str, Any], hashed: dict[str, Hashed]) -> dict[str, set[str]]:
    """Folder object digest -> the file digests its manifest lists (verified ones only)."""
    out: dict[str, set[str]] = {}
    for name, h in hashed.items():
        entry = entries.get(name)
        if h.content is None or not isinstance(entry, dict) or not _content_ok(entry, h):
            continue
        try:
            listing = json.loads(h.content)
            out[str(entry.get("blob"))] = {str(f["digest"]) for f in listing.values()}
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
    return out


def check_data(
    manifest: dict[str, Any],
    hashed: dict[str, Hashed],
    events: list[dict[str, Any]],
    report: BundleReport,
) -> None:
    """Tie every data member to the ledger's digests (see the module docstring)."""
    entries = manifest.get("data")
    if not isinstance(entries, dict):
        for name in sorted(hashed):
            report.fail(name, "a data member, but the manifest describes no data")
        return
    recorded = _recorded(events)
    folders = _folders(entries, hashed)
    for name, h in sorted(hashed.items()):
        entry = entries.get(name)
        if not isinstance(entry, dict):
            report.fail(name, "not described in the manifest's data section")
            continue
        blob, folder = str(entry.get("blob")), entry.get("folder")
        artifacts = entry.get("artifacts") or [blob]
        element = f"data of artifact {artifacts[0]} ({name})"
        if folder:
            element = f"data of artifact {artifacts[0]}, file {entry.get('path')!r} ({name})"
        owners = recorded.get(str(folder or blob), [])
        if not owners:
            report.fail(
                element,
                f"no artifact.recorded event in the bundle records the object {folder or blob}",
            )
            continue
        if folder and blob not in folders.get(str(folder), set()):
            report.fail(element, "its folder's manifest in the bundle does not list this file")
            continue
        if entry.get("sealed"):
            if not all(_sealed(p) for p in owners):
                report.fail(element, "marked sealed, but the ledger records the object as plain")
            elif h.blake3 != entry.get("blake3"):
                report.fail(
                    element,
                    f"its content hashes to {h.blake3}, not to {entry.get('blake3')} as the "
                    "signed manifest states: the data was changed",
                )
            else:
                report.data_sealed += 1
            continue
        if h.blake3 != blob:
            report.fail(
                element,
                f"its content hashes to {h.blake3}, not to {blob} as the ledger records: "
                "the data was changed",
            )
            continue
        report.data += 1
