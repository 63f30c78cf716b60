"""A recorded run's environment as files that rebuild it elsewhere.

Three formats (:data:`ENV_FORMATS`), all made from the environment snapshot the run
recorded (:mod:`pipetrail.capture.environment`) and nothing measured now:

* ``requirements``: pip requirements, one ``name==version`` per installed distribution,
  with the Python version and OS in a header comment;
* ``pylock``: a PEP 751 ``pylock.toml`` (``lock-version = "1.0"``), one ``[[packages]]``
  entry per distribution, ``requires-python`` pinned to the recorded version and an
  ``environments`` marker for the recorded OS and machine;
* ``dockerfile``: an official ``python:<version>-slim-<debian release>`` base image
  chosen from the recorded Python version and OS release (:func:`base_image`), the
  recorded numerics-related environment variables, and the requirements installed.

Distributions not installed from an index are handled as honestly as the record allows.
A version-control install with a recorded commit becomes a direct reference
(``name @ git+URL@COMMIT``, a ``vcs`` table in the lock); a remote archive becomes
``name @ URL`` (with its hash when recorded); an editable or local-folder install cannot
be fetched from anywhere else, so it is written as a comment naming where it came from
(a ``directory`` entry in the lock, which is exact only on the recording machine).
Snapshots recorded before install origins were captured list every distribution as if
it came from an index.

Deterministic: the same run gives the same bytes. Read-only. Never imports cli.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from pipetrail.lineage.environment import RecordedEnvironment, load_recorded_environment
from pipetrail.lineage.exports.collect import ExportError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pipetrail.execution.project import Project

__all__ = [
    "ENV_FORMATS",
    "base_image",
    "dockerfile_text",
    "export_environment",
    "pylock_text",
    "requirements_text",
]

ENV_FORMATS = ("requirements", "pylock", "dockerfile")
#: Debian releases with official ``python:*-slim-<codename>`` images, and their glibc.
_DEBIAN_GLIBC = (("bullseye", (2, 31)), ("bookworm", (2, 36)), ("trixie", (2, 41)))
_DEFAULT_DEBIAN = "bookworm"
_DOCKER_PLATFORMS = {
    "x86_64": "linux/amd64",
    "amd64": "linux/amd64",
    "aarch64": "linux/arm64",
    "arm64": "linux/arm64",
}
_SYS_PLATFORMS = {"Linux": "linux", "Darwin": "darwin", "Windows": "win32"}
_GLIBC_RE = re.compile(r"glibc (\d+)\.(\d+)")


def export_environment(project: Project, run_ref: str, format_name: str) -> str:
    """Return a run's environment as ``requirements``, ``pylock`` or ``dockerfile`` text.

    Raises:
        ExportError: an unknown format, or the snapshot is unavailable.
        NotFoundError: no run matches ``run_ref``.
    """
    if format_name not in ENV_FORMATS:
        raise ExportError(
            f"unknown environment format {format_name!r}; choose one of {', '.join(ENV_FORMATS)}"
        )
    env = load_recorded_environment(project, run_ref)
    if format_name == "requirements":
        return requirements_text(env)
    if format_name == "pylock":
        return pylock_text(env)
    return dockerfile_text(env)


# -- shared facts ------------------------------------------------------------------------
def _python(snapshot: Mapping[str, Any]) -> tuple[str, str]:
    python = snapshot.get("python") or {}
    return str(python.get("version") or "unknown"), str(python.get("implementation") or "")


def _summary(snapshot: Mapping[str, Any]) -> str:
    version, implementation = _python(snapshot)
    os_info = snapshot.get("os") or {}
    parts = [f"Python {version}" + (f" ({implementation})" if implementation else "")]
    parts.append(" ".join(str(os_info[k]) for k in ("system", "machine") if os_info.get(k)))
    if os_info.get("libc"):
        parts.append(str(os_info["libc"]))
    distro = os_info.get("distro") or {}
    if distro.get("name") or distro.get("id"):
        parts.append(str(distro.get("name") or distro.get("id")))
    return ", ".join(p for p in parts if p)


def _header(env: RecordedEnvironment) -> list[str]:
    return [
        f"Environment of run {env.run_id} (pipeline {env.pipeline}), recorded {env.started_at}",
        f"by pipetrail {env.pipetrail_version or '(unknown version)'}.",
        f"Recorded on: {_summary(env.snapshot)}.",
    ]


def _distributions(env: RecordedEnvironment) -> list[dict[str, Any]]:
    found = [dict(d) for d in env.snapshot.get("distributions") or [] if d.get("name")]
    return sorted(found, key=lambda d: str(d["name"]))


def _local_path(url: str) -> str | None:
    parts = urlsplit(url)
    return unquote(parts.path) if parts.scheme == "file" else None


def _direct_reference(dist: Mapping[str, Any]) -> str | None:
    """``name @ URL`` for a VCS checkout with a commit or a remote archive, else None."""
    origin = dist.get("direct_url") or {}
    url = str(origin.get("url") or "")
    if not url or origin.get("editable") or _local_path(url) is not None:
        return None
    fragment = f"#subdirectory={origin['subdirectory']}" if origin.get("subdirectory") else ""
    if origin.get("vcs"):
        if not origin.get("commit_id"):
            return None
        return f"{dist['name']} @ {origin['vcs']}+{url}@{origin['commit_id']}{fragment}"
    if origin.get("archive_hash") and not fragment:
        fragment = f"#{origin['archive_hash']}"
    return f"{dist['name']} @ {url}{fragment}"


def _unreproducible(dist: Mapping[str, Any]) -> str | None:
    """Why a distribution cannot be installed from the record, or None if it can."""
    origin = dist.get("direct_url")
    if not origin:
        return None
    if _direct_reference(dist) is not None:
        return None
    url = str(origin.get("url") or "")
    how = "an editable install" if origin.get("editable") else "installed"
    if origin.get("vcs") and not origin.get("commit_id"):
        return f"{how} from {origin['vcs']}+{url} with no recorded commit"
    where = "the local folder" if _local_path(url) is not None else "the URL"
    return f"{how} from {where} {url}; install it from that source"


# -- requirements ------------------------------------------------------------------------
def _requirement_lines(env: RecordedEnvironment) -> list[str]:
    lines: list[str] = []
    names = set()
    for dist in _distributions(env):
        names.add(dist["name"])
        pin = f"{dist['name']}=={dist['version']}"
        reason = _unreproducible(dist)
        if reason is not None:
            lines.append(f"# {pin}: {reason}")
            continue
        lines.append(_direct_reference(dist) or pin)
    if "pipetrail" not in names and env.pipetrail_version:
        lines.append(
            f"# pipetrail=={env.pipetrail_version}: recorded the run but was not an installed "
            "distribution (ran from a source tree)"
        )
    return lines


def requirements_text(env: RecordedEnvironment) -> str:
    """Pip requirements pinning every distribution the run's environment had."""
    version, _ = _python(env.snapshot)
    header = [
        *_header(env),
        f"Needs Python {version}: python -m pip install -r requirements.txt",
        "Commented pins below were installed from a local source; install those from it.",
    ]
    return "".join(f"# {line}\n" for line in header) + "".join(
        f"{line}\n" for line in _requirement_lines(env)
    )


# -- pylock.toml -------------------------------------------------------------------------
# Written with tomli-w: it escapes strings and quotes keys by the TOML spec, and lays out
# the same data the same way every time (a short package as one inline table per line,
# ``[[packages]]`` tables as soon as one entry would not fit on a line).
def _lock_package(dist: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A ``[[packages]]`` entry: its keys, and its source sub-table (``vcs``...) if any."""
    entry: dict[str, Any] = {"name": dist["name"]}
    origin = dist.get("direct_url") or {}
    url = str(origin.get("url") or "")
    local = _local_path(url) if url else None
    subdirectory = {"subdirectory": origin["subdirectory"]} if origin.get("subdirectory") else {}
    if origin.get("vcs") and origin.get("commit_id"):
        entry["version"] = dist["version"]
        vcs: dict[str, Any] = {"type": origin["vcs"]}
        vcs["path" if local is not None else "url"] = local if local is not None else url
        if origin.get("requested_revision"):
            vcs["requested-revision"] = origin["requested_revision"]
        vcs["commit-id"] = origin["commit_id"]
        return entry, {"vcs": vcs | subdirectory}
    if url and (origin.get("editable") or (local is not None and not origin.get("archive_hash"))):
        # A source tree: the spec says not to pin a version that the tree may not match.
        directory: dict[str, Any] = {"path": local if local is not None else url}
        if origin.get("editable"):
            directory["editable"] = True
        return entry, {"directory": directory | subdirectory}
    entry["version"] = dist["version"]
    if url and origin.get("archive_hash"):
        algorithm, _, value = str(origin["archive_hash"]).partition("=")
        archive: dict[str, Any] = {"path" if local is not None else "url": local or url}
        archive["hashes"] = {algorithm: value}
        return entry, {"archive": archive | subdirectory}
    return entry, {}


def _environment_marker(snapshot: Mapping[str, Any]) -> str | None:
    os_info = snapshot.get("os") or {}
    terms = []
    platform = _SYS_PLATFORMS.get(str(os_info.get("system")))
    if platform:
        terms.append(f"sys_platform == '{platform}'")
    machine = os_info.get("machine")
    if isinstance(machine, str) and re.fullmatch(r"[A-Za-z0-9_.-]+", machine):
        terms.append(f"platform_machine == '{machine}'")
    return " and ".join(terms) or None


def pylock_text(env: RecordedEnvironment) -> str:
    """A PEP 751 ``pylock.toml`` of the run's distributions.

    Distributions installed from an index carry ``name`` and ``version`` only: an
    installed environment keeps no record of the index or the hashes of the files it
    was installed from. Installers that require a file source for every entry need a
    lock re-resolved from these pins (``pip lock -r requirements.txt`` on a matching
    machine).
    """
    import tomli_w

    version, implementation = _python(env.snapshot)
    document: dict[str, Any] = {"lock-version": "1.0"}
    marker = _environment_marker(env.snapshot)
    if marker:
        document["environments"] = [marker]
    if version != "unknown":
        document["requires-python"] = "==" + version
    document["created-by"] = "pipetrail"
    packages = []
    for dist in _distributions(env):
        entry, sources = _lock_package(dist)
        packages.append(entry | sources)
    document["packages"] = packages
    tool = {"run": env.run_id, "pipeline": env.pipeline, "python": version}
    if implementation:
        tool["implementation"] = implementation
    document["tool"] = {"pipetrail": tool}
    header = "".join(f"# {line}\n" for line in _header(env))
    return header + tomli_w.dumps(document)


# -- Dockerfile --------------------------------------------------------------------------
def base_image(snapshot: Mapping[str, Any]) -> tuple[str, list[str]]:
    """Choose an official Python base image for a snapshot; return it and why.

    The tag is the recorded Python version plus a variant from the recorded OS: the
    Debian release itself when the run was on Debian (``slim-bookworm``), Alpine's
    release for musl-based Alpine, and otherwise the oldest Debian release whose glibc is
    at least the recorded one (binary wheels built for that glibc keep working).
    """
    version, implementation = _python(snapshot)
    os_info = snapshot.get("os") or {}
    distro = os_info.get("distro") or {}
    notes: list[str] = []
    if version == "unknown":
        notes.append("the Python version was not recorded; using the image's default Python")
        version = "3"
    if implementation and implementation != "CPython":
        notes.append(f"the run used {implementation}; this image has CPython")
    system = os_info.get("system")
    if system != "Linux":
        notes.append(
            f"the run was on {system or 'an unknown OS'}; this Linux image is the nearest "
            "rebuild, and binary packages may differ"
        )
        return f"python:{version}-slim-{_DEFAULT_DEBIAN}", notes
    codenames = [name for name, _ in _DEBIAN_GLIBC]
    if distro.get("id") == "debian" and distro.get("codename") in codenames:
        return f"python:{version}-slim-{distro['codename']}", notes
    if distro.get("id") == "alpine" and distro.get("version_id"):
        release = ".".join(str(distro["version_id"]).split(".")[:2])
        return f"python:{version}-alpine{release}", notes
    found = _GLIBC_RE.search(str(os_info.get("libc") or ""))
    described = distro.get("name") or distro.get("id") or "an unrecorded Linux distribution"
    if found is None:
        notes.append(f"the run was on {described} without a recorded glibc; using Debian")
        return f"python:{version}-slim-{_DEFAULT_DEBIAN}", notes
    glibc = (int(found.group(1)), int(found.group(2)))
    for codename, debian_glibc in _DEBIAN_GLIBC:
        if debian_glibc >= glibc:
            notes.append(
                f"the run was on {described} (glibc {glibc[0]}.{glibc[1]}); Debian {codename} "
                f"has glibc {debian_glibc[0]}.{debian_glibc[1]}"
            )
            return f"python:{version}-slim-{codename}", notes
    codename, debian_glibc = _DEBIAN_GLIBC[-1]
    notes.append(
        f"the run was on {described} (glibc {glibc[0]}.{glibc[1]}), newer than any Debian "
        f"base; Debian {codename} has glibc {debian_glibc[0]}.{debian_glibc[1]}"
    )
    return f"python:{version}-slim-{codename}", notes


def _env_line(name: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'ENV {name}="{escaped}"'


def dockerfile_text(env: RecordedEnvironment) -> str:
    """A Dockerfile that rebuilds the run's environment (BuildKit, one self-contained file).

    The requirements are embedded with a heredoc, so the file needs no build context.
    """
    image, notes = base_image(env.snapshot)
    machine = str((env.snapshot.get("os") or {}).get("machine") or "").lower()
    platform = _DOCKER_PLATFORMS.get(machine)
    lines = ["# syntax=docker/dockerfile:1"]
    lines += [f"# {line}" for line in _header(env)]
    lines += [f"# Note: {note}." for note in notes]
    lines.append(f"FROM {'--platform=' + platform + ' ' if platform else ''}{image}")
    env_vars = env.snapshot.get("env_vars") or {}
    for name in sorted(env_vars):
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            lines.append(_env_line(name, str(env_vars[name])))
    lines.append("COPY <<'REQUIREMENTS' /tmp/requirements.txt")
    lines += _requirement_lines(env)
    lines.append("REQUIREMENTS")
    lines.append("RUN python -m pip install --no-cache-dir -r /tmp/requirements.txt")
    return "\n".join(lines) + "\n"
