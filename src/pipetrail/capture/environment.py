"""Environment snapshots: the interpreter, OS, hardware and installed packages of a run.

Owns :func:`capture_environment`, the JSON-able snapshot a run records (schema below), and
:func:`environment_digest`; the installed distributions, and their on-disk cache, come
from :mod:`pipetrail.capture.distributions`. Imports only ``pipetrail.hashing``,
``pipetrail.capture`` and the standard library; never ``store``, ``ledger``,
``execution`` or ``cli``.

Snapshot schema (``schema_version`` 1)::

    {
      "schema_version": 1,
      "python": {"version", "implementation", "executable", "prefix"},
      "os": {"system", "release", "version", "machine", "platform", "libc"?,
             "distro"?: {"id", "version_id"?, "codename"?, "name"?}},
      "cpu": {"model", "logical_cores", "usable_cores"?, "physical_cores"?},
      "memory": {"total_bytes"},
      "gpu": [{"name", "driver", "memory"}, ...],
      "distributions": [{"name", "version", "direct_url"?}, ...],  # sorted by name
      "env_vars": {NAME: value},                     # allow-listed names only
    }

Keys marked ``?`` are present only when the platform can tell. ``os.distro`` comes from
``/etc/os-release`` (Linux). A distribution's ``direct_url`` is present when it was not
installed from an index (PEP 610 ``direct_url.json``): ``{"url", "editable"?, "vcs"?,
"commit_id"?, "requested_revision"?, "archive_hash"?, "subdirectory"?}``; both keys were
added without a schema bump, so older snapshots lack them. Values never contain secrets:
environment variables are read from a fixed allow-list of numerics-related names, and
credentials in a direct URL (``user:token@``) are removed.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

from pipetrail.capture.distributions import cached_distributions
from pipetrail.capture.distributions import list_distributions as list_distributions
from pipetrail.hashing import digest_value

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "ENV_VAR_ALLOWLIST",
    "SNAPSHOT_SCHEMA_VERSION",
    "capture_environment",
    "environment_digest",
    "list_distributions",
]

_log = logging.getLogger(__name__)

SNAPSHOT_SCHEMA_VERSION = 1

#: Environment variables recorded in a snapshot: only ones that change numeric results
#: (thread counts change float reduction order; hash seeds change set/dict iteration;
#: ``CUBLAS_WORKSPACE_CONFIG`` is required for deterministic cuBLAS).
ENV_VAR_ALLOWLIST = (
    "PYTHONHASHSEED",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
    "CUBLAS_WORKSPACE_CONFIG",
    "TZ",
)

_NVIDIA_SMI_TIMEOUT_S = 3.0
_IMPLEMENTATIONS = {"cpython": "CPython", "pypy": "PyPy", "graalpy": "GraalPy"}


def capture_environment(*, cache_dir: Path | None = None) -> dict[str, Any]:
    """Return a JSON-able snapshot of the interpreter, OS, hardware and packages.

    Listing every installed distribution is the expensive part (tens of milliseconds),
    and a run records it at every start. With ``cache_dir`` the list is cached in
    ``cache_dir/distributions.json`` under a key made of ``sys.executable``, the
    ``sys.path`` entries and, for each folder among them, the name, inode and mtime of
    each ``*.dist-info`` and ``*.egg-info`` in it (for a legacy ``*.egg-info`` folder,
    of its ``PKG-INFO``), which is where ``importlib.metadata`` finds distributions;
    for a zip file on the path, its inode and mtime. The key is honest because
    installing, removing, upgrading or reinstalling a distribution adds, removes or
    replaces such an entry (a reinstall of the same version makes a new folder: a new
    inode); legacy ``setup.py develop`` installs rewrite ``PKG-INFO`` in place, which
    its mtime catches; a changed interpreter or search path (``.pth`` files included)
    changes the key directly. A listing taken while any of those entries is less than
    two seconds old is not cached, since a second change within the same timestamp tick
    would not change the key. Editing files inside an installed package changes no
    version and needs no invalidation, and other files in those folders (a project's
    own files, beside its pipeline on the search path) do not count.
    The CPU's model and physical cores and the GPUs (per ``PATH``) are read once per
    process; everything else in the snapshot is cheap and read fresh every time.

    Args:
        cache_dir: a writable directory for the distributions cache (for example the
            project's ``.pipetrail/cache``); ``None`` lists distributions every time.

    Returns:
        The snapshot described in this module's docstring.
    """
    return {
        "schema_version": SNAPSHOT_SCHEMA_VERSION,
        "python": _python_info(),
        "os": _os_info(),
        "cpu": _cpu_info(),
        "memory": {"total_bytes": _total_memory_bytes()},
        "gpu": _gpu_info(),
        "distributions": cached_distributions(cache_dir),
        "env_vars": {
            name: value for name in ENV_VAR_ALLOWLIST if (value := os.environ.get(name)) is not None
        },
    }


def environment_digest(snapshot: dict[str, Any]) -> str:
    """Return the digest of a snapshot's canonical encoding.

    Two snapshots have the same digest exactly when every recorded fact is equal,
    including paths such as ``python.executable``.
    """
    return digest_value(snapshot)


def _python_info() -> dict[str, Any]:
    name = sys.implementation.name
    return {
        # The leading token of sys.version is what platform.python_version() parses.
        "version": sys.version.split(" ", 1)[0],
        "implementation": _IMPLEMENTATIONS.get(name, name),
        "executable": sys.executable,
        "prefix": sys.prefix,
    }


def _os_info() -> dict[str, Any]:
    if hasattr(os, "uname"):
        uname = os.uname()
        system, release, version, machine = (
            uname.sysname,
            uname.release,
            uname.version,
            uname.machine,
        )
    else:  # Windows
        import platform

        system, release, version, machine = (
            platform.system(),
            platform.release(),
            platform.version(),
            platform.machine(),
        )
    info: dict[str, Any] = {
        "system": system,
        "release": release,
        "version": version,
        "machine": machine,
    }
    libc = _libc()
    # Same shape as platform.platform(), which is avoided because it spawns `uname -p`.
    info["platform"] = "-".join([system, release, machine]) + (
        f"-with-{libc.replace(' ', '')}" if libc else ""
    )
    if libc:
        info["libc"] = libc
    distro = _distro()
    if distro:
        info["distro"] = distro
    return info


def _distro() -> dict[str, str] | None:
    """Return the Linux distribution from ``/etc/os-release`` (``ID``, ``VERSION_ID``...)."""
    import platform

    try:
        release = platform.freedesktop_os_release()
    except OSError:
        return None  # not Linux, or no os-release file
    found = {
        key: release[field]
        for key, field in (
            ("id", "ID"),
            ("version_id", "VERSION_ID"),
            ("codename", "VERSION_CODENAME"),
            ("name", "PRETTY_NAME"),
        )
        if release.get(field)
    }
    return found if "id" in found else None


def _libc() -> str | None:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION")  # "glibc 2.36"
    except (AttributeError, ValueError, OSError):
        return None  # not glibc (musl, macOS, Windows)


# Hardware facts a process reads once (the kernel builds /proc/cpuinfo anew at every
# read, and finding nvidia-smi scans PATH): the CPU's model and cores, and the GPUs seen
# through each PATH. What may change while a process lives (usable cores) is read fresh.
_hardware: dict[Any, Any] = {}


def _cpu_info() -> dict[str, Any]:
    info: dict[str, Any] = {"model": None, "logical_cores": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        info["usable_cores"] = len(os.sched_getaffinity(0))
    found = _hardware.get("cpuinfo")
    if found is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            return info
        found = _hardware["cpuinfo"] = _parse_cpuinfo(text)
    model, physical = found
    info["model"] = model
    if physical is not None:
        info["physical_cores"] = physical
    return info


def _parse_cpuinfo(text: str) -> tuple[str | None, int | None]:
    """Return the CPU model and the number of distinct (package, core) pairs."""
    model: str | None = None
    cores: set[tuple[str, str]] = set()
    package = core = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            # A blank line ends one logical CPU's block.
            if package is not None and core is not None:
                cores.add((package, core))
            package = core = None
            continue
        key = key.strip()
        if key in ("model name", "Hardware", "cpu model") and model is None:
            model = value.strip() or None
        elif key == "physical id":
            package = value.strip()
        elif key == "core id":
            core = value.strip()
    if package is not None and core is not None:
        cores.add((package, core))
    return model, (len(cores) or None)


def _total_memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _which(name: str) -> str | None:
    """``shutil.which`` on POSIX without importing shutil (a run looks for one program)."""
    if os.name == "nt":
        import shutil

        return shutil.which(name)
    for folder in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(folder or os.curdir, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _gpu_info() -> list[dict[str, str]]:
    """The NVIDIA GPUs ``nvidia-smi`` lists, asked once per process and ``PATH``."""
    key = ("gpu", os.environ.get("PATH", os.defpath))
    found = _hardware.get(key)
    if found is None:
        found = _hardware[key] = _query_gpus()
    return [dict(gpu) for gpu in found]


def _query_gpus() -> list[dict[str, str]]:
    """Query NVIDIA GPUs through ``nvidia-smi``; any failure means "no GPU seen"."""
    exe = _which("nvidia-smi")
    if exe is None:
        return []
    import subprocess  # only where nvidia-smi exists

    try:
        result = subprocess.run(
            [
                exe,
                "--query-gpu=name,driver_version,memory.total",
                "--format=csv,noheader",
            ],
            capture_output=True,
            timeout=_NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        _log.debug("nvidia-smi failed: %s", exc)
        return []
    if result.returncode != 0:
        _log.debug("nvidia-smi exited with %d: %r", result.returncode, result.stderr[:200])
        return []
    gpus = []
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) == 3:
            gpus.append({"name": fields[0], "driver": fields[1], "memory": fields[2]})
    return gpus
