"""The installed distributions of this interpreter, and the cache that spares listing them.

Owns :func:`list_distributions` (every distribution ``import`` can find, with its version
and, for a direct-URL install, its origin) and :func:`cached_distributions`, the same list
through the on-disk cache ``distributions.json`` and the per-process memo
(:mod:`pipetrail.capture.listing_memo`, ADR 0035). The cache key and why it is honest
are described in :func:`pipetrail.capture.environment.capture_environment`, the snapshot
these lists go into. Imports only ``pipetrail.hashing``, ``pipetrail.errors``,
``pipetrail.core.version``, its siblings ``listing_memo`` and ``file_memo``, and the
standard library.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetrail.capture import listing_memo
from pipetrail.capture.file_memo import read_remembered
from pipetrail.core.version import VERSION
from pipetrail.errors import ProjectError
from pipetrail.hashing import digest_bytes

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "cached_distributions",
    "cached_module_distributions",
    "list_distributions",
    "module_distributions",
]

_log = logging.getLogger(__name__)

# Bump when the cached file's layout or the key's inputs change, so old files are ignored.
_CACHE_FORMAT = 4
_CACHE_FILE = "distributions.json"
_MODULES_FORMAT = 1
_MODULES_FILE = "module_distributions.json"
# A directory modified this recently may be modified again within the same timestamp tick
# (kernel timestamps are coarse-grained), which the key could not tell apart; such a
# listing is used but not cached ("racy git" rule).
_RACY_WINDOW_NS = 2_000_000_000
_NORMALIZE_RE = re.compile(r"[-_.]+")


def list_distributions() -> list[dict[str, Any]]:
    """Return every installed distribution as ``{"name", "version"}``, sorted by name.

    A distribution installed from a direct URL, a local folder (editable or not) or a
    version-control checkout also has ``direct_url`` (its keys are listed in
    :mod:`pipetrail.capture.environment`).

    Names are normalized as in PEP 503 (lowercase, runs of ``-_.`` become ``-``). When a
    name is installed in several ``sys.path`` entries, the first one wins, because that
    is the one ``import`` finds. Distributions without a name or version (broken
    installs) are skipped.
    """
    return _listing(None)


def _listing(scanned: Mapping[str, Sequence[str]] | None) -> list[dict[str, Any]]:
    """:func:`list_distributions`, checked against the folders' names in ``scanned``.

    ``scanned`` maps each ``sys.path`` folder to the names in it, as read just before
    (on a cache miss, while building the cache key): every metadata entry among them
    must be in the listing. ``None`` reads the folders once the listing is made.
    """
    # Imported here: importlib.metadata costs ~30 ms to import and is only needed on a
    # cache miss.
    import importlib.metadata

    # importlib.metadata remembers each folder's names per folder mtime for the rest of
    # the process: an install within the same timestamp tick as an earlier listing (or
    # with its folder's mtime set back) would list the names of before. Forget them, in
    # every finder on sys.meta_path: once any library imports the importlib_metadata
    # backport, its own finder (with its own cache) answers in place of the standard
    # library's.
    _forget_listing_caches()
    dists = list(importlib.metadata.distributions())
    for _ in range(2):
        # A finder whose cache the call above does not reach, or another thread putting
        # stale names back: list again while a folder disagrees with the listing.
        if _listing_is_fresh(dists, scanned):
            break
        _forget_listing_caches()
        dists = list(importlib.metadata.distributions())
    else:
        if not _listing_is_fresh(dists, scanned):
            raise ProjectError(
                "the installed distributions changed while the environment was listed "
                "(a package install running at the same time?): run again once it ended"
            )
    found: dict[str, dict[str, Any]] = {}
    for dist in dists:
        name, version = _name_and_version(dist)
        if not name or not version:
            _log.debug("skipping a distribution without name or version at %r", dist)
            continue
        key = _NORMALIZE_RE.sub("-", name).lower()
        if key in found:
            continue
        entry: dict[str, Any] = {"name": key, "version": version}
        origin = _direct_url(dist)
        if origin is not None:
            entry["direct_url"] = origin
        found[key] = entry
    return [found[name] for name in sorted(found)]


def _forget_listing_caches() -> None:
    """Forget the folder listings of the standard library's finder and of every other."""
    import importlib
    import importlib.metadata

    importlib.metadata.MetadataPathFinder().invalidate_caches()
    importlib.invalidate_caches()  # each finder on sys.meta_path, the backport's too


def _listing_is_fresh(dists: list[Any], scanned: Mapping[str, Sequence[str]] | None) -> bool:
    """Whether every metadata entry of every ``sys.path`` folder is one of ``dists``.

    ``dists`` is what importlib.metadata listed; a folder's ``*.dist-info`` and
    ``*.egg-info`` names (from ``scanned``, or read now when it is None) must each be the
    location of one of them (names that importlib.metadata itself skips, such as those
    without a version, are never listed by it either, so only names it would list count).
    """
    listed: set[str] = set()
    for dist in dists:
        where = getattr(dist, "_path", None)
        if where is not None:
            listed.add(os.path.normcase(os.path.abspath(str(where))))
    for folder, names in (_path_folders() if scanned is None else scanned).items():
        for name in names:
            lowered = name.lower()
            if not (lowered.endswith(".dist-info") or lowered.endswith(".egg-info")):
                continue
            path = os.path.normcase(os.path.join(folder, name))
            if path not in listed and _would_list(path):
                return False
    return True


def _path_folders() -> dict[str, list[str]]:
    """The names in each folder on ``sys.path``, read now (entries that are not folders: none)."""
    found: dict[str, list[str]] = {}
    for entry in sys.path:
        folder = os.path.abspath(entry or os.curdir)
        try:
            found[folder] = os.listdir(folder)
        except OSError:
            continue
    return found


def _would_list(path: str) -> bool:
    """Whether importlib.metadata lists the metadata entry at ``path`` (it has a name)."""
    import importlib.metadata

    try:
        return bool(importlib.metadata.PathDistribution(Path(path)).metadata["Name"])
    except (OSError, KeyError, ValueError):
        return False


def _direct_url(dist: Any) -> dict[str, Any] | None:
    """Summarize a distribution's PEP 610 ``direct_url.json``, or None (index install)."""
    try:
        text = dist.read_text("direct_url.json")
    except OSError:
        return None
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        return None
    origin: dict[str, Any] = {"url": _without_credentials(data["url"])}
    dir_info = data.get("dir_info")
    if isinstance(dir_info, dict) and dir_info.get("editable") is True:
        origin["editable"] = True
    vcs_info = data.get("vcs_info")
    if isinstance(vcs_info, dict):
        for key, target in (
            ("vcs", "vcs"),
            ("commit_id", "commit_id"),
            ("requested_revision", "requested_revision"),
        ):
            if isinstance(vcs_info.get(key), str):
                origin[target] = vcs_info[key]
    archive_info = data.get("archive_info")
    if isinstance(archive_info, dict):
        hashes = archive_info.get("hashes")
        if isinstance(hashes, dict) and isinstance(hashes.get("sha256"), str):
            origin["archive_hash"] = "sha256=" + hashes["sha256"]
        elif isinstance(archive_info.get("hash"), str):
            origin["archive_hash"] = archive_info["hash"]
    if isinstance(data.get("subdirectory"), str):
        origin["subdirectory"] = data["subdirectory"]
    return origin


def _without_credentials(url: str) -> str:
    """Drop ``user:password@`` from a URL; tokens must never reach a run record."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    host, slash, path = rest.partition("/")
    if "@" in host:
        host = host.rsplit("@", 1)[1]
    return f"{scheme}://{host}{slash}{path}"


def _name_and_version(dist: Any) -> tuple[str | None, str | None]:
    """Read ``Name`` and ``Version`` from a distribution's metadata headers.

    Scanning the header block directly is ~40x faster than ``dist.metadata``, which
    runs the full e-mail parser over the (often long) description too. Distributions
    whose metadata is not a plain file fall back to that parser.
    """
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO")
    if text is None:
        return dist.metadata["Name"], dist.metadata["Version"]
    name = version = None
    for line in text.splitlines():
        if not line:
            break  # end of the header block
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.lower()
        if key == "name" and name is None:
            name = value.strip()
        elif key == "version" and version is None:
            version = value.strip()
        if name and version:
            break
    return name, version


def cached_distributions(cache_dir: Path | None) -> list[dict[str, Any]]:
    """:func:`list_distributions`, through the cache in ``cache_dir`` (None: no cache).

    The cache file and its key are described in
    :func:`pipetrail.capture.environment.capture_environment`; the last listing a process
    used is handed out again while what it rests on is unchanged (ADR 0035). The caller
    gets a list of its own; the entries are shared and must not be modified.
    """
    if cache_dir is None:
        return list_distributions()
    cache_file = cache_dir / _CACHE_FILE
    name = os.fspath(cache_file)
    recalled = listing_memo.recall(name)
    if recalled is not None:
        return list(recalled)
    started = time.time_ns()  # before any stat: the racy rule's reference
    stamps = listing_memo.path_stamps()
    cached = _read_cache(cache_file)
    known = cached["folders"] if cached is not None else {}
    key, newest, folders = _distributions_key(known, started)
    old_enough = started - newest > _RACY_WINDOW_NS
    if cached is not None and cached["key"] == key:
        if old_enough and folders != known:
            # Same distributions, but a folder changed (a project's file beside them):
            # remember its new listing so the next run need not scan it again.
            _write_cache(cache_file, key, folders, cached["distributions"])
        distributions: list[dict[str, Any]] = cached["distributions"]
    else:
        # The folders were just read for the key: the listing is checked against those
        # names rather than reading every folder again.
        distributions = _listing({where: [row[0] for row in f[3]] for where, f in folders.items()})
        if old_enough:
            _write_cache(cache_file, key, folders, distributions)
    listing_memo.remember(
        name, stamps, folders, distributions, newest=newest, limit=started - _RACY_WINDOW_NS
    )
    return list(distributions)


def module_distributions() -> dict[str, tuple[str, str]]:
    """Top-level module name -> ``(distribution, version)`` of the distribution providing it.

    What :func:`pipetrail.hashing.locality.distribution_of` answers, for every module at
    once: of the distributions ``importlib.metadata.packages_distributions`` names for a
    module, the first by name, with its ``importlib.metadata.version``. A module no
    distribution provides (or whose distribution has no version) is absent.
    """
    import importlib.metadata

    _forget_listing_caches()
    found: dict[str, tuple[str, str]] = {}
    for top, names in importlib.metadata.packages_distributions().items():
        if not names:
            continue
        name = sorted(names)[0]
        try:
            found[top] = (name, importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def cached_module_distributions(cache_dir: Path) -> dict[str, tuple[str, str]]:
    """:func:`module_distributions`, through the cache file ``module_distributions.json``.

    Reading which distribution provides each module means reading every installed
    distribution's file list (about 0.15 s for a hundred distributions), at every run
    whose steps use a library. The answer depends only on the distributions' metadata
    folders, so it is kept under the same key as ``distributions.json`` (the metadata
    entries of every ``sys.path`` folder, see :func:`_distributions_key`) and with the
    same rules: a file that fails its check or was written by another version is
    ignored, and an answer made within the racy window of a folder's change is used but
    not kept. The caller must not modify the value.
    """
    cache_file = cache_dir / _MODULES_FILE
    started = time.time_ns()
    try:
        cached = read_remembered(cache_file, _parse_modules)
    except OSError:
        cached = None
    known = cached["folders"] if cached is not None else {}
    key, newest, folders = _distributions_key(known, started)
    if cached is not None and cached["key"] == key:
        modules: dict[str, tuple[str, str]] = cached["modules"]
        return modules
    modules = module_distributions()
    if started - newest > _RACY_WINDOW_NS:
        body = {
            "format": _MODULES_FORMAT,
            "pipetrail": VERSION,
            "key": key,
            "folders": folders,
            "modules": {top: list(found) for top, found in sorted(modules.items())},
        }
        _write_file(cache_file, _cache_payload(body), prefix=".module-distributions-")
    return modules


def _parse_modules(payload: bytes) -> dict[str, Any] | None:
    data = _checked_body(payload, _MODULES_FORMAT, "module distributions")
    if data is None:
        return None
    modules, folders = data.get("modules"), data.get("folders")
    if not isinstance(modules, dict) or not isinstance(folders, dict):
        return None
    found: dict[str, tuple[str, str]] = {}
    for top, pair in modules.items():
        if not (isinstance(pair, list) and len(pair) == 2 and all(type(x) is str for x in pair)):
            return None
        found[top] = (pair[0], pair[1])
    return {"key": data["key"], "folders": folders, "modules": found}


def _checked_body(payload: bytes, format_: int, what: str) -> dict[str, Any] | None:
    """The body of a cache file this pipetrail wrote in ``format_``, else ``None``.

    The first line is the digest of the rest; the body must name the format, this
    version of pipetrail and a text key.
    """
    check, _, text = payload.partition(b"\n")
    try:
        if check.decode("ascii") != digest_bytes(text):
            _log.debug("the %s cache fails its check; ignored", what)
            return None
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("format") != format_:
        return None
    if data.get("pipetrail") != VERSION or not isinstance(data.get("key"), str):
        return None
    return data


# One folder on sys.path: its inode, mtime_ns and ctime_ns, and its package metadata
# entries ([name, inode, mtime_ns], see _metadata_entries) as they were then.
_Folder = list[Any]


def _distributions_key(
    known: dict[str, _Folder], started: int
) -> tuple[str, int, dict[str, _Folder]]:
    """Return the cache key for the current search path, the newest stamp in it, the folders.

    Per ``sys.path`` entry: for a folder, its package metadata (see
    :func:`_metadata_entries`); for anything else (a zip file), its inode and mtime.
    Other files in those folders (a project's own files, next to its pipeline) do not
    change the key. A folder whose inode, mtime and ctime are those of its entry in
    ``known`` holds the same names as then (creating, removing or renaming anything in
    a folder moves its mtime, and its ctime cannot be set back), so its listing is
    reused instead of scanned; the ``PKG-INFO`` of a legacy ``*.egg-info``, which
    ``setup.py develop`` rewrites in place, is stat-ed again all the same. A folder
    changed within the racy window before ``started`` may change again within the same
    timestamp tick: its listing is kept without its stamps, so it is scanned next time.
    """
    entries: list[list[Any]] = []
    folders: dict[str, _Folder] = {}
    newest = 0
    for entry in sys.path:
        try:
            # An empty entry means the current directory to the import system.
            where = os.path.abspath(entry or os.curdir)
            st = os.stat(where)
        except OSError:
            entries.append([entry, entry, None, None, []])
            continue
        if stat.S_ISDIR(st.st_mode):
            sig = [st.st_ino, st.st_mtime_ns, st.st_ctime_ns]
            seen = known.get(where)
            if isinstance(seen, list) and len(seen) == 4 and seen[:3] == sig:
                metadata = [
                    _restat_egg_info(where, row) if row[0].lower().endswith(".egg-info") else row
                    for row in seen[3]
                ]
            else:
                metadata = _metadata_entries(where)
            racy = max(st.st_mtime_ns, st.st_ctime_ns) >= started - _RACY_WINDOW_NS
            folders[where] = [None, None, None, metadata] if racy else [*sig, metadata]
            entries.append([entry, where, "folder", None, metadata])  # not its own mtime
            newest = max([newest, *(mtime or 0 for *_, mtime in metadata)])
        else:
            entries.append([entry, where, st.st_ino, st.st_mtime_ns, []])
            newest = max(newest, st.st_mtime_ns)
    return _key_of([_CACHE_FORMAT, sys.executable, entries]), newest, folders


_last_key: list[Any] = [None, None]  # [what the key was made of, the key]


def _key_of(parts: list[Any]) -> str:
    """The digest of ``parts`` as plain JSON (the key is compared, never recorded).

    The last one made in this process is reused when ``parts`` are equal.
    """
    made_of, key = _last_key
    if key is not None and made_of == parts:
        return str(key)
    text = json.dumps(parts, separators=(",", ":"))
    key = digest_bytes(text.encode("utf-8"))
    _last_key[:] = [parts, key]
    return str(key)


def _restat_egg_info(directory: str, row: list[Any]) -> list[Any]:
    """A remembered metadata entry, with a legacy ``*.egg-info`` folder's PKG-INFO re-read."""
    name = row[0]
    if not name.lower().endswith(".egg-info"):
        return row
    path = os.path.join(directory, name)
    if os.path.isdir(path):
        path = os.path.join(path, "PKG-INFO")
    try:
        st = os.stat(path)
    except OSError:
        return [name, None, None]
    return [name, st.st_ino, st.st_mtime_ns]


def _metadata_entries(directory: str) -> list[list[Any]]:
    """``[name, inode, mtime_ns]`` of what ``importlib.metadata`` reads in a folder.

    That is each ``*.dist-info`` and ``*.egg-info`` in it (and ``EGG-INFO`` in an unzipped
    ``*.egg``). Installing, removing, upgrading or reinstalling a distribution adds,
    removes or replaces one of them (a new inode and mtime); a legacy ``setup.py develop``
    rewrites ``PKG-INFO`` in place, so for an ``*.egg-info`` folder that file's mtime
    counts instead of the folder's.
    """
    egg = directory.lower().endswith(".egg")
    found = []
    try:
        with os.scandir(directory) as scan:
            for item in scan:
                low = item.name.lower()
                if not (low.endswith((".dist-info", ".egg-info")) or (egg and low == "egg-info")):
                    continue
                path = item.path
                if low.endswith(".egg-info") and item.is_dir():
                    path = os.path.join(item.path, "PKG-INFO")
                try:
                    st = os.stat(path)
                    found.append([item.name, st.st_ino, st.st_mtime_ns])
                except OSError:
                    found.append([item.name, None, None])
    except OSError:
        return []
    return sorted(found, key=lambda row: row[0])


def _cache_payload(body: dict[str, Any]) -> bytes:
    """A cache file's bytes: the digest of the JSON body on the first line, then the body."""
    text = json.dumps(body, separators=(",", ":")).encode("utf-8")
    return digest_bytes(text).encode("ascii") + b"\n" + text


def _read_cache(cache_file: Path) -> dict[str, Any] | None:
    """Read the cache file; None unless it is this version's and passes its check.

    A file edited by hand, torn, or written by another pipetrail version or cache
    format is ignored (and replaced by the next listing), never trusted: its first line
    is the digest of the rest, and the rest names the format and the version. A file
    this process read before and that has not changed since is not read again
    (:mod:`pipetrail.capture.file_memo`); the value is shared, never modified.
    """
    try:
        found: dict[str, Any] | None = read_remembered(cache_file, _parse_cache)
    except OSError:
        return None
    return found


def _parse_cache(payload: bytes) -> dict[str, Any] | None:
    data = _checked_body(payload, _CACHE_FORMAT, "distributions")
    if data is None:
        return None
    # The first line vouches that this pipetrail wrote the rest: shapes need no deep check.
    distributions, folders = data.get("distributions"), data.get("folders")
    if not isinstance(distributions, list) or not isinstance(folders, dict):
        return None
    for item in distributions:
        if type(item) is not dict or type(item.get("name")) is not str:
            return None
    return data


def _write_cache(
    cache_file: Path,
    key: str,
    folders: dict[str, _Folder],
    distributions: list[dict[str, Any]],
) -> None:
    """Write the cache atomically; a failure only costs speed, so it is logged, not raised."""
    body: dict[str, Any] = {
        "format": _CACHE_FORMAT,
        "pipetrail": VERSION,
        "key": key,
        "folders": folders,
        "distributions": distributions,
    }
    _write_file(cache_file, _cache_payload(body), prefix=".distributions-")


def _write_file(cache_file: Path, payload: bytes, *, prefix: str) -> None:
    """Write a cache file atomically; a failure only costs speed: logged, not raised."""
    import tempfile  # only needed on a cache miss

    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_file.parent, prefix=prefix)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            os.replace(tmp, cache_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        _log.warning("could not write the distributions cache %s: %s", cache_file, exc)
