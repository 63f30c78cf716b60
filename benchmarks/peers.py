"""Peer tools measured in the same run as pipetrail: DVC, Kedro, MLflow in private virtualenvs.

DVC is installed from the package index with ``pip install dvc==VERSION`` (pinned:
``DVC_REQUIREMENT``, so that two runs compare with the same peer) into its own
virtualenv, ``benchmarks/.work/peers-venv`` (git-ignored), never into the project's venv,
so the project's dependencies stay untouched. The first use creates it (about a minute
with a network connection); later uses reuse it. An ``INSTALLED`` marker, written last,
holds the requirement it was installed from, so an interrupted installation, or one of
another version, is redone.

When the installation fails (no network, no index), :func:`ensure_dvc` returns a
:class:`PeerUnavailable` saying why; the benchmarks then print the comparisons with DVC
as "not measured", with no verdict (never a constant in place of the peer).
Kedro (:func:`ensure_kedro`, for the per-step overhead) is installed the same way, pinned
(``KEDRO_REQUIREMENT``), into ``benchmarks/.work/kedro-venv``; MLflow (:func:`ensure_mlflow`,
for the per-run cost) into ``benchmarks/.work/mlflow-venv`` (``MLFLOW_REQUIREMENT``): the
per-run benchmark runs a script with its interpreter (:attr:`Mlflow.python`), against a
local tracking store in a throw-away folder. :func:`ensure_venv` does the same for a peer
library that a benchmark drives with a script of its own (s3fs, for ``s3_store.py``).

:class:`DvcRepo` runs DVC commands in a throw-away repository (``dvc init --no-scm``)
with everything DVC writes kept inside it: the cache (``.dvc/cache``, DVC's default, so on
the same file system as the data), and its state and index databases
(``DVC_SITE_CACHE_DIR``, otherwise under ``/var/tmp/dvc``). Analytics are off
(``DVC_NO_ANALYTICS``) and the user's and the system's DVC configuration are not read.

Run: ``.venv/bin/python benchmarks/peers.py [--reinstall]`` installs (or checks) the
peer virtualenvs and prints the versions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
import venv
from dataclasses import dataclass
from pathlib import Path

from _common import WORK_DIR, log, run_timed

PEERS_VENV = WORK_DIR / "peers-venv"
DVC_REQUIREMENT = "dvc==3.67.1"
KEDRO_VENV = WORK_DIR / "kedro-venv"
KEDRO_REQUIREMENT = "kedro==1.7.0"
MLFLOW_VENV = WORK_DIR / "mlflow-venv"
MLFLOW_REQUIREMENT = "mlflow==3.17.2"
_MARKER = PEERS_VENV / "INSTALLED"
_INSTALL_TIMEOUT_S = 1200


@dataclass(frozen=True)
class Dvc:
    """An installed DVC: its console script and version."""

    executable: Path
    version: str


@dataclass(frozen=True)
class PeerUnavailable:
    """Why a peer could not be installed or run."""

    reason: str


def _bin(name: str) -> Path:
    return PEERS_VENV / "bin" / name


def _version(executable: Path) -> str | None:
    try:
        proc = subprocess.run(
            [str(executable), "--version"], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def _install() -> str | None:
    """Create the virtualenv and pip-install DVC; return an error message, or None."""
    return _install_into(PEERS_VENV, DVC_REQUIREMENT)


def _install_into(folder: Path, requirement: str) -> str | None:
    """Create a virtualenv in ``folder`` and pip-install ``requirement``; error or None."""
    shutil.rmtree(folder, ignore_errors=True)
    log(f"peers: installing {requirement!r} into {folder} (first use only)...")
    try:
        venv.EnvBuilder(with_pip=True, clear=True).create(folder)
        # Few retries and a short timeout: offline, fail in seconds rather than minutes.
        proc = subprocess.run(
            [
                str(folder / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--retries",
                "1",
                "--timeout",
                "30",
                requirement,
            ],
            capture_output=True,
            text=True,
            timeout=_INSTALL_TIMEOUT_S,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if proc.returncode != 0:
        last = ((proc.stderr or proc.stdout).strip().splitlines() or [""])[-1]
        return f"pip install {requirement} exited with {proc.returncode}: {last[:120]}"
    return None


def ensure_venv(folder: Path, requirement: str) -> Path | PeerUnavailable:
    """The interpreter of a private virtualenv holding ``requirement``, made on first use.

    For a peer library a benchmark drives with a script of its own (s3fs): the virtualenv
    in ``folder`` is reused when its ``INSTALLED`` marker (written last) names
    ``requirement``; otherwise it is made again and ``requirement`` pip-installed into it.

    Returns:
        The virtualenv's ``python``, or why it could not be installed (the caller then
        reports its rows as not measured).
    """
    python = folder / "bin" / "python"
    marker = folder / "INSTALLED"
    if marker.is_file() and marker.read_text().strip() == requirement and python.is_file():
        return python
    error = _install_into(folder, requirement)
    if error is not None:
        shutil.rmtree(folder, ignore_errors=True)
        log(f"peers: {requirement} could not be installed ({error})")
        return PeerUnavailable(f"{requirement} could not be installed: {error}")
    marker.write_text(requirement + "\n")
    return python


def ensure_dvc(*, reinstall: bool = False) -> Dvc | PeerUnavailable:
    """Return the peer virtualenv's DVC, installing it on first use.

    Args:
        reinstall: delete the peer virtualenv and install again.

    Returns:
        The installed DVC, or why it is not available (the caller then reports the
        comparisons as not measured).
    """
    executable = _bin("dvc")
    installed = _MARKER.read_text().strip() if _MARKER.is_file() else None
    if not reinstall and installed == DVC_REQUIREMENT and executable.is_file():
        version = _version(executable)
        if version is not None:
            return Dvc(executable, version)
        log("peers: the peer virtualenv does not run DVC; installing again")
    error = _install()
    if error is not None:
        shutil.rmtree(PEERS_VENV, ignore_errors=True)
        log(f"peers: DVC could not be installed ({error})")
        return PeerUnavailable(f"install failed: {error}")
    version = _version(executable)
    if version is None:
        return PeerUnavailable("installed, but `dvc --version` failed")
    _MARKER.write_text(DVC_REQUIREMENT + "\n")
    log(f"peers: DVC {version} installed")
    return Dvc(executable, version)


@dataclass(frozen=True)
class Kedro:
    """An installed Kedro: the interpreter of its virtualenv, and its version."""

    python: Path
    version: str


def _kedro_version(python: Path) -> str | None:
    try:
        proc = subprocess.run(
            [str(python), "-c", "import kedro; print(kedro.__version__)"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def ensure_kedro(*, reinstall: bool = False) -> Kedro | PeerUnavailable:
    """Return the Kedro virtualenv's interpreter, installing Kedro on first use.

    Kedro gets a virtualenv of its own (``KEDRO_VENV``), pinned to ``KEDRO_REQUIREMENT``,
    with the same ``INSTALLED`` marker as DVC's.

    Args:
        reinstall: delete the virtualenv and install again.

    Returns:
        The installed Kedro, or why it is not available (the caller then reports the
        comparisons as not measured).
    """
    python = KEDRO_VENV / "bin" / "python"
    marker = KEDRO_VENV / "INSTALLED"
    installed = marker.read_text().strip() if marker.is_file() else None
    if not reinstall and installed == KEDRO_REQUIREMENT and python.is_file():
        version = _kedro_version(python)
        if version is not None:
            return Kedro(python, version)
        log("peers: the Kedro virtualenv does not import kedro; installing again")
    error = _install_into(KEDRO_VENV, KEDRO_REQUIREMENT)
    if error is not None:
        shutil.rmtree(KEDRO_VENV, ignore_errors=True)
        log(f"peers: Kedro could not be installed ({error})")
        return PeerUnavailable(f"install failed: {error}")
    version = _kedro_version(python)
    if version is None:
        return PeerUnavailable("installed, but `import kedro` failed")
    marker.write_text(KEDRO_REQUIREMENT + "\n")
    log(f"peers: Kedro {version} installed")
    return Kedro(python, version)


@dataclass(frozen=True)
class Mlflow:
    """An installed MLflow: the interpreter of its virtualenv and its version."""

    python: Path
    version: str


def _mlflow_version(python: Path) -> str | None:
    try:
        proc = subprocess.run(
            [str(python), "-c", "import mlflow; print(mlflow.__version__)"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else None


def ensure_mlflow(*, reinstall: bool = False) -> Mlflow | PeerUnavailable:
    """Return the MLflow virtualenv's interpreter, installing MLflow on first use.

    Args:
        reinstall: delete MLflow's virtualenv and install again.

    Returns:
        The installed MLflow, or why it is not available (the caller then reports the
        comparisons as not measured).
    """
    python = MLFLOW_VENV / "bin" / "python"
    marker = MLFLOW_VENV / "INSTALLED"
    installed = marker.read_text().strip() if marker.is_file() else None
    if not reinstall and installed == MLFLOW_REQUIREMENT and python.is_file():
        version = _mlflow_version(python)
        if version is not None:
            return Mlflow(python, version)
        log("peers: the MLflow virtualenv does not import mlflow; installing again")
    error = _install_into(MLFLOW_VENV, MLFLOW_REQUIREMENT)
    if error is not None:
        shutil.rmtree(MLFLOW_VENV, ignore_errors=True)
        log(f"peers: MLflow could not be installed ({error})")
        return PeerUnavailable(f"install failed: {error}")
    version = _mlflow_version(python)
    if version is None:
        return PeerUnavailable("installed, but `import mlflow` failed")
    marker.write_text(MLFLOW_REQUIREMENT + "\n")
    log(f"peers: MLflow {version} installed")
    return Mlflow(python, version)


class DvcRepo:
    """A new DVC repository in ``folder`` (created), for timing ``dvc`` commands in it.

    Args:
        dvc: the DVC to run.
        folder: where the repository goes; must not exist yet.

    Raises:
        RuntimeError: ``dvc init`` failed.
    """

    def __init__(self, dvc: Dvc, folder: Path) -> None:
        self.dvc = dvc
        self.root = folder
        folder.mkdir(parents=True)
        self._env = dict(os.environ)
        self._env.update(
            DVC_NO_ANALYTICS="1",
            DVC_SITE_CACHE_DIR=str(folder / ".site-cache"),
            DVC_GLOBAL_CONFIG_DIR=str(folder / ".global-config"),
            DVC_SYSTEM_CONFIG_DIR=str(folder / ".system-config"),
        )
        self.run("init", "--no-scm", "-q")

    def run(self, *args: str) -> tuple[float, str]:
        """Run ``dvc ARGS`` in the repository; return (whole-process wall seconds, stdout).

        Raises:
            RuntimeError: the command exited with a non-zero status.
        """
        return run_timed([str(self.dvc.executable), *args], cwd=self.root, env=self._env)

    def add(self, name: str) -> float:
        """Time ``dvc add NAME``; check that the cache then holds every file of it."""
        seconds, _ = self.run("add", "-q", name)
        files = sum(len(names) for _, _, names in os.walk(self.root / name))
        cached = sum(len(names) for _, _, names in os.walk(self.root / ".dvc" / "cache"))
        if not (self.root / f"{name}.dvc").is_file() or cached < files:
            raise RuntimeError(f"dvc add {name}: {cached} cache files for {files} files")
        return seconds

    def status(self) -> float:
        """Time ``dvc status``; check that it reports nothing changed."""
        seconds, out = self.run("status")
        if "up to date" not in out:
            raise RuntimeError(f"dvc status reports changes:\n{out}")
        return seconds

    def link_type(self, name: str) -> str:
        """How the cache holds the files of ``NAME``: symlink, hardlink, or copy (or reflink).

        A reflink and a copy look alike to ``stat``; ``cp --reflink=always`` tells whether
        the file system could have made a reflink.
        """
        sample = next(Path(d) / names[0] for d, _, names in os.walk(self.root / name) if names)
        if sample.is_symlink():
            return "symlink"
        if sample.stat().st_nlink > 1:
            return "hardlink"
        probe = self.root / ".reflink-probe"
        refused = subprocess.run(
            ["cp", "--reflink=always", str(sample), str(probe)], capture_output=True, check=False
        ).returncode
        probe.unlink(missing_ok=True)
        return "copy" if refused else "reflink or copy"


class DvcAddRuns:
    """``dvc add`` of one folder, each time in a new repository, then ``dvc status``.

    The folder is copied once (``cp -r`` + ``sync``, untimed) and the copy is moved
    (renamed) into each new repository, so every ``dvc add`` starts from an empty cache
    and empty state on files that are single links, in the page cache, like the
    original. A hard-linked copy would not do: DVC's checkout after ``add`` replaces a
    file with more than one link by a copy from its cache, work it would not do on a
    user's data. Nothing is deleted here (the caller removes ``tmp`` at the end).

    Args:
        dvc: the DVC to run.
        tmp: a folder for the repositories, on the file system of the compared store.
    """

    def __init__(self, dvc: Dvc, tmp: Path) -> None:
        self.dvc = dvc
        self.tmp = tmp
        self.link = "?"
        self._data: Path | None = None
        self._repo: DvcRepo | None = None
        self._count = 0

    def prepare(self, folder: Path) -> None:
        """Copy ``folder`` once, then warm DVC up on a few of its files (untimed).

        Raises:
            RuntimeError: a DVC command failed.
        """
        warm = DvcRepo(self.dvc, self.tmp / "dvc-warm-up")
        some = sorted(p for p in folder.rglob("*") if p.is_file() and p.stat().st_size < 2**20)
        (warm.root / "some").mkdir()
        for path in some[:50]:
            shutil.copyfile(path, warm.root / "some" / path.name)
        warm.add("some")
        warm.status()
        self._data = self.tmp / "dvc-data" / folder.name
        self._data.parent.mkdir()
        subprocess.run(["cp", "-r", str(folder), str(self._data)], check=True)
        os.sync()

    def add(self) -> tuple[float, float]:
        """``dvc add`` in a new repository; return (its wall seconds, a ``sync`` after it).

        The ``sync`` flushes what DVC wrote (it does not fsync its cache) so that the
        write-back does not slow down whatever is timed next.
        """
        if self._data is None:
            raise RuntimeError("DvcAddRuns.prepare() was not called")
        self._count += 1
        repo = DvcRepo(self.dvc, self.tmp / f"dvc-repo-{self._count}")
        data = repo.root / self._data.name
        self._data.rename(data)
        self._data, self._repo = data, repo
        os.sync()  # dvc init's few files: not part of the add
        seconds = repo.add(data.name)
        start = time.perf_counter()
        os.sync()
        synced = time.perf_counter() - start
        self.link = repo.link_type(data.name)
        log(f"  dvc add rep {self._count}: {seconds:.3f} s (+ sync {synced:.3f} s)")
        return seconds, synced

    def status(self) -> float:
        """``dvc status`` in the last repository :meth:`add` used (nothing changed)."""
        if self._repo is None:
            raise RuntimeError("DvcAddRuns.add() was not called")
        return self._repo.status()


def _main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reinstall", action="store_true", help="install the peers again")
    reinstall = parser.parse_args().reinstall
    status = 0
    dvc = ensure_dvc(reinstall=reinstall)
    if isinstance(dvc, PeerUnavailable):
        print(f"DVC not available: {dvc.reason}")
        status = 1
    else:
        print(f"DVC {dvc.version}: {dvc.executable}")
    for name, ensure in (("Kedro", ensure_kedro), ("MLflow", ensure_mlflow)):
        peer = ensure(reinstall=reinstall)
        if isinstance(peer, PeerUnavailable):
            print(f"{name} not available: {peer.reason}")
            status = 1
        else:
            print(f"{name} {peer.version}: {peer.python}")
    return status


if __name__ == "__main__":
    sys.exit(_main())
