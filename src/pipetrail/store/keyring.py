"""The project keyring: its data keys, wrapped by the key encryption key, and rotation.

Settings come from ``[encryption]`` in ``pipetrail.toml``:

```toml
[encryption]
provider = "file"                # or "env", or a plugin's name
# path = "~/secrets/kek"         # file provider: the key file
#                                # (default .pipetrail/private/kek, created 0600)
# variable = "PIPETRAIL_KEK"     # env provider: the variable holding the key
# keyring = ".pipetrail/keyring.json"   # or "ledger": kept in the project's ledger
```

The keyring holds the project data keys (:class:`~pipetrail.store.sealed.SealingKeys`),
and the key of keyed digests once a re-encryption set it apart, wrapped by the provider's
key encryption key (KEK), never in clear; each entry names the KEK that wrapped it. It is
created on the first sensitive write (with a fresh KEK in the default key file, for the
file provider), and only then: a keyring missing from a project that already holds
sealed or keyed content was lost, and :func:`open_keys` refuses to make another.
:func:`rotate_keys` wraps every key again under a new KEK and retires the old KEK: no
sealed object is rewritten, so every recorded digest stays valid.
:func:`begin_reencryption` and :func:`finish_reencryption` bracket a re-encryption under
a new data key (docs/adr/0025-reencryption.md). Where the document is kept is a
:class:`KeyringHolder`: a file (written to a temp file, fsynced and renamed, mode 0600),
or the ledger (:mod:`pipetrail.execution.ledger_keyring`).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pipetrail.errors import IntegrityError, ProjectError, StoreError
from pipetrail.store.encryption import new_data_key, unwrap_key, wrap_key
from pipetrail.store.key_providers import KeyFile, KeyProvider, load_provider
from pipetrail.store.sealed import SealingKeys, data_key_id

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "EncryptionSettings",
    "FileKeyring",
    "KeyringExists",
    "KeyringHolder",
    "Rotation",
    "begin_reencryption",
    "check_keyring",
    "finish_reencryption",
    "open_keys",
    "pending_reencryption",
    "rotate_keys",
]

KEYRING_KIND = "pipetrail.keyring"
_VERSION = 2  # 2: a digest key kept apart from the data keys (ADR 0025)
_SETTINGS = {"provider", "path", "variable", "keyring"}


@dataclass(frozen=True)
class EncryptionSettings:
    """The ``[encryption]`` table, resolved.

    Attributes:
        provider: the key provider's name (``file``, ``env`` or a plugin's).
        options: the provider's own settings (``path``, ``variable``, a plugin's keys).
        keyring: the keyring file (with ``in_ledger``: the file a keyring is imported
            from, once, if the ledger holds none yet).
        default_key_file: the key file the ``file`` provider uses without ``path``.
        in_ledger: ``keyring = "ledger"``: the keyring (wrapped keys only) is kept in the
            project's ledger, so a team sharing a database distributes only the KEK.
        holder: where the keyring is kept, when not the file (set by the project).
    """

    provider: str
    options: dict[str, Any] = field(default_factory=dict)
    keyring: Path = Path(".pipetrail/keyring.json")
    default_key_file: Path = Path(".pipetrail/private/kek")
    in_ledger: bool = False
    holder: KeyringHolder | None = None

    def keyring_holder(self) -> KeyringHolder:
        """Where the keyring is kept.

        Raises:
            StoreError: ``keyring = "ledger"`` but no ledger holder was given (the
                project gives one: :meth:`pipetrail.execution.project.Project.encryption`).
        """
        if self.holder is not None:
            return self.holder
        if self.in_ledger:
            raise StoreError(
                'encryption.keyring = "ledger" keeps the keyring in the project\'s ledger; '
                "open it through the project"
            )
        return FileKeyring(self.keyring)

    @classmethod
    def load(cls, root: Path, state_dir: Path) -> EncryptionSettings:
        """Read ``[encryption]`` from the project's ``pipetrail.toml`` (defaults without).

        Raises:
            StoreError: the table is malformed (names the key and what was expected).
        """
        from pipetrail.config_tables import CONFIG_FILE, project_table

        path = root / CONFIG_FILE
        try:
            table: Any = project_table(root, "encryption")
        except ProjectError as exc:
            raise StoreError(str(exc)) from None
        if table is None:
            table = {}
        if not isinstance(table, dict):
            raise StoreError(f"{path}: [encryption] must be a table")
        provider = table.get("provider", "file")
        if not isinstance(provider, str) or not provider:
            raise StoreError(f"{path}: encryption.provider must be a name such as 'file' or 'env'")
        for key in ("path", "variable", "keyring"):
            if key in table and not isinstance(table[key], str):
                raise StoreError(f"{path}: encryption.{key} must be text, got {table[key]!r}")
        if provider in ("file", "env"):
            unknown = set(table) - _SETTINGS
            if unknown:
                raise StoreError(
                    f"{path}: unknown key(s) encryption.{', encryption.'.join(sorted(unknown))}; "
                    f"known: {', '.join(sorted(_SETTINGS))}"
                )
        options = {k: v for k, v in table.items() if k not in ("provider", "keyring")}
        if "path" in options and not Path(os.path.expanduser(options["path"])).is_absolute():
            options["path"] = str(root / options["path"])
        in_ledger = table.get("keyring") == "ledger"
        keyring = Path(os.path.expanduser(table.get("keyring", "")))
        if not table.get("keyring") or in_ledger:
            keyring = state_dir / "keyring.json"
        elif not keyring.is_absolute():
            keyring = root / keyring
        return cls(
            provider=provider,
            options=options,
            keyring=keyring,
            default_key_file=state_dir / "private" / "kek",
            in_ledger=in_ledger,
        )

    def key_provider(self) -> KeyProvider:
        """Build the configured key provider."""
        return load_provider(self.provider, self.options, default_file=self.default_key_file)


def check_keyring(ring: Any, where: str) -> dict[str, Any]:
    """A keyring document, checked (its kind, version and entries).

    Raises:
        StoreError: it is not a pipetrail keyring, or a newer pipetrail wrote it.
    """
    try:
        entries = ring["data_keys"]
        if ring.get("kind") != KEYRING_KIND or not isinstance(entries, list) or not entries:
            raise ValueError
        if not isinstance(ring.get("version", 1), int) or ring.get("version", 1) > _VERSION:
            raise StoreError(
                f"the keyring {where} was written by a newer pipetrail (version "
                f"{ring.get('version')}); upgrade pipetrail to read it"
            )
        extra = [ring[k] for k in ("digest_key", "pending") if k in ring]
        for entry in [*entries, *extra]:
            if not all(isinstance(entry.get(k), str) for k in ("id", "kek", "wrapped")):
                raise ValueError
    except (ValueError, KeyError, TypeError, AttributeError):
        raise StoreError(
            f"the keyring {where} is not a pipetrail keyring (changed or truncated); restore it "
            "from a backup: sensitive artifacts cannot be read without it"
        ) from None
    return dict(ring)


def _read_keyring(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"cannot read the keyring {path}: {exc}") from None
    try:
        ring = json.loads(text)
    except ValueError:
        ring = None
    return check_keyring(ring, str(path))


class KeyringExists(StoreError):
    """A first keyring was to be written, but another process wrote one meanwhile."""


class KeyringHolder(Protocol):
    """Where the keyring document is kept: a file, or the ledger (``keyring = "ledger"``)."""

    @property
    def where(self) -> str:
        """Names the place in messages."""
        ...

    def read(self) -> dict[str, Any] | None:
        """The keyring (checked with :func:`check_keyring`), or None when there is none."""
        ...

    def write(self, ring: dict[str, Any], *, first: bool = False) -> None:
        """Keep ``ring`` as the keyring; with ``first``, refuse if one appeared meanwhile."""
        ...


@dataclass(frozen=True)
class FileKeyring:
    """The keyring in a file, written atomically with mode 0600."""

    path: Path

    @property
    def where(self) -> str:
        """The file's path."""
        return str(self.path)

    def read(self) -> dict[str, Any] | None:
        """The keyring, or None when the file does not exist."""
        return _read_keyring(self.path)

    def write(self, ring: dict[str, Any], *, first: bool = False) -> None:
        """Replace the file (temp file, fsync, rename)."""
        del first  # one project's writers share the file: the last rename wins
        _write_private(self.path, json.dumps(ring, indent=1).encode("utf-8"))


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _entry(kek_id: str, kek: bytes, data_key: bytes) -> dict[str, str]:
    return {
        "id": data_key_id(data_key),
        "kek": kek_id,
        "wrapped": base64.b64encode(wrap_key(kek, data_key)).decode("ascii"),
    }


def _unwrap(provider: KeyProvider, entry: dict[str, str], path: str) -> bytes:
    try:
        kek = provider.get(entry["kek"])
    except StoreError as exc:
        raise StoreError(
            f"the project key {entry['id']} in {path} was wrapped with the key "
            f"{entry['kek']}, which the configured key provider does not hold: {exc}"
        ) from None
    data_key = unwrap_key(kek, base64.b64decode(entry["wrapped"]), what=f"keyring {path}")
    if data_key_id(data_key) != entry["id"]:
        raise IntegrityError(f"the keyring {path} was changed: data key {entry['id']} is not it")
    return data_key


def open_keys(
    settings: EncryptionSettings,
    *,
    create: bool,
    sealed_before: Callable[[], str | None] | None = None,
) -> SealingKeys:
    """Unwrap the project's data keys.

    Args:
        settings: the ``[encryption]`` settings.
        create: make the keyring (and the default key file) when there is none; only
            writes do, so reads never invent keys.
        sealed_before: asked, when there is no keyring and ``create``, what the project
            already holds under its keys (in words; None: nothing). A keyring is made
            only for a project that holds nothing: otherwise it was lost, and a new one
            would seal new content under a key the old content does not open.

    Raises:
        StoreError: no keyring (and not ``create``, or the project already holds
            content sealed or keyed under a keyring: names it and how to restore it), a
            key the provider does not hold, a key file with loose permissions, or a
            keyring that was changed.
        IntegrityError: a wrapped data key does not unwrap with its KEK.
    """
    holder = settings.keyring_holder()
    ring = holder.read()
    if ring is None:
        if not create:
            raise StoreError(
                f"no keyring at {holder.where}: this project never stored sensitive "
                "content, or the keyring was lost (restore it from a backup)"
            )
        held = sealed_before() if sealed_before is not None else None
        if held is not None:
            raise StoreError(_lost_keyring(holder.where, held))
        provider = settings.key_provider()
        if (
            isinstance(provider, KeyFile)
            and provider.path == settings.default_key_file
            and not provider.path.exists()
        ):
            provider.create()
        kek_id, kek = provider.current()
        data_key = new_data_key()
        ring = {"kind": KEYRING_KIND, "version": 1, "data_keys": [_entry(kek_id, kek, data_key)]}
        try:
            holder.write(ring, first=True)
        except KeyringExists:
            # Another process made the keyring first: its data key is the project's.
            found = holder.read()
            if found is None:
                raise
            return _keys_of(found, settings.key_provider(), holder.where)
        return SealingKeys.single(data_key)
    return _keys_of(ring, settings.key_provider(), holder.where)


def _lost_keyring(where: str, held: str) -> str:
    """The message for a keyring gone from a project that holds content under it."""
    return (
        f"no keyring at {where}, but this project already holds {held} under its keys: "
        "the keyring was lost or moved, and a new one would seal new content under a key "
        f"that opens none of the old, so none was made; restore the keyring {where} from "
        "a backup (and the key encryption key that wraps it, if that went too), then retry"
    )


def _keys_of(ring: dict[str, Any], provider: KeyProvider, path: str) -> SealingKeys:
    """Unwrap a keyring's keys: its data keys, a pending one (it opens), its digest key."""
    entries = [*ring["data_keys"], *([ring["pending"]] if "pending" in ring else [])]
    keys = {e["id"]: _unwrap(provider, e, path) for e in entries}
    digest_key = _unwrap(provider, ring["digest_key"], path) if "digest_key" in ring else None
    return SealingKeys(current=ring["data_keys"][0]["id"], data_keys=keys, digest_key=digest_key)


@dataclass(frozen=True)
class Rotation:
    """What :func:`rotate_keys` did.

    Attributes:
        old_keks: the ids of the KEKs the data keys were wrapped with before.
        new_kek: the id of the KEK that wraps them now.
        data_keys: the ids of the data keys wrapped again.
        retired: whether the old KEKs were removed from the key file.
    """

    old_keks: list[str]
    new_kek: str
    data_keys: list[str]
    retired: bool


def _wrapped_entries(ring: dict[str, Any]) -> list[dict[str, str]]:
    """Every wrapped key of a keyring: data keys, a pending data key, the digest key."""
    return [*ring["data_keys"], *(ring[k] for k in ("pending", "digest_key") if k in ring)]


def rotate_keys(settings: EncryptionSettings, *, old: KeyProvider | None = None) -> Rotation:
    """Wrap every project data key under a new KEK; no sealed object is rewritten.

    With the ``file`` provider a fresh KEK is put first in the key file, the keyring is
    rewritten atomically under it, then the old KEKs are removed from the key file. With
    other providers the new KEK is the provider's current one (set the new key, e.g. in
    the environment variable) and ``old`` must hold the old one(s).

    Raises:
        StoreError: no keyring, the old KEK is not available (nothing is changed), or the
            provider's current KEK already wraps every data key.
    """
    holder = settings.keyring_holder()
    ring = holder.read()
    if ring is None:
        raise StoreError(f"no keyring at {holder.where}: there are no data keys to rotate")
    provider = settings.key_provider()
    before = old if old is not None else provider
    # Unwrap everything with the old key(s) first: a wrong old key changes nothing.
    opened = _keys_of(ring, before, holder.where)
    keys = {e["id"]: opened.data_keys[e["id"]] for e in ring["data_keys"]}
    old_keks = sorted({e["kek"] for e in _wrapped_entries(ring)})
    if isinstance(provider, KeyFile):
        provider.rotate()
    new_id, new_kek = provider.current()
    if old_keks == [new_id]:
        raise StoreError(
            f"the key provider's current key {new_id} already wraps every data key; set the "
            "new key in the provider first (for 'env': the new key in the variable, the old "
            "one given with --old-variable)"
        )
    ring["data_keys"] = [_entry(new_id, new_kek, keys[e["id"]]) for e in ring["data_keys"]]
    if "pending" in ring:
        ring["pending"] = _entry(new_id, new_kek, opened.data_keys[ring["pending"]["id"]])
    if opened.digest_key is not None:
        ring["digest_key"] = _entry(new_id, new_kek, opened.digest_key)
    holder.write(ring)
    retired = False
    if isinstance(provider, KeyFile):
        provider.retire(keep=new_id)
        retired = True
    return Rotation(old_keks=old_keks, new_kek=new_id, data_keys=list(keys), retired=retired)


def begin_reencryption(settings: EncryptionSettings) -> tuple[SealingKeys, SealingKeys]:
    """Add a pending data key to the keyring (or take the one a cut-short run left).

    The pending key opens (a reader finds it) but does not seal: new content is still
    sealed with the current data key until :func:`finish_reencryption`. The digest key is
    written apart from the data keys first, so keyed digests outlive the data key they
    were derived from (docs/adr/0025-reencryption.md).

    Returns:
        ``(every key that opens, the keys that seal with the pending data key)``.

    Raises:
        StoreError: no keyring, or a key the provider does not hold (nothing changed).
        IntegrityError: a wrapped key does not unwrap (nothing changed).
    """
    holder = settings.keyring_holder()
    ring = holder.read()
    if ring is None:
        raise StoreError(
            f"no keyring at {holder.where}: this project has no sealed content to re-encrypt"
        )
    provider = settings.key_provider()
    # Unwrap everything first: a wrong key changes nothing.
    opened = _keys_of(ring, provider, holder.where)
    if "pending" not in ring:
        kek_id, kek = provider.current()
        if "digest_key" not in ring:
            ring["digest_key"] = _entry(kek_id, kek, opened.digest_key_bytes())
        ring["pending"] = _entry(kek_id, kek, new_data_key())
        ring["version"] = _VERSION
        holder.write(ring)
        opened = _keys_of(ring, provider, holder.where)
    pending = ring["pending"]["id"]
    sealing = SealingKeys(
        current=pending,
        data_keys={pending: opened.data_keys[pending]},
        digest_key=opened.digest_key_bytes(),
    )
    return opened, sealing


def finish_reencryption(settings: EncryptionSettings) -> list[str]:
    """Make the pending data key the only one; return the ids of the data keys removed.

    Raises:
        StoreError: no keyring, or no re-encryption under way.
    """
    holder = settings.keyring_holder()
    ring = holder.read()
    if ring is None or "pending" not in ring:
        raise StoreError(f"no re-encryption is under way in {holder.where}")
    retired = [e["id"] for e in ring["data_keys"]]
    ring["data_keys"] = [ring.pop("pending")]
    holder.write(ring)
    return retired


def pending_reencryption(settings: EncryptionSettings) -> str | None:
    """The id of the pending data key of a re-encryption under way, or None."""
    holder = settings.keyring_holder()
    ring = holder.read()
    return None if ring is None or "pending" not in ring else str(ring["pending"]["id"])
