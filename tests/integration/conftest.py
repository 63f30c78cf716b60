"""Fixtures for running real pipelines written to module files in a temporary project."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import textwrap
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.execution.loader import load_pipeline
from pipetrail.execution.project import Project
from tests.support.otlp_receiver import OtlpReceiver, otlp_receiver

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from pipetrail.core.pipeline import PipelineDefinition
    from pipetrail.execution.executors import Executor


class PipelineFiles:
    """Writes pipeline modules into a project folder and (re)loads them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.loaded: list[str] = []

    def write(self, name: str, source: str) -> Path:
        path = self.root / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        # A helper rewritten with the same length within one second would otherwise be
        # imported from its stale bytecode cache (trusted by whole-second mtime and size).
        with contextlib.suppress(FileNotFoundError):
            os.unlink(importlib.util.cache_from_source(str(path)))
        sys.modules.pop(name, None)
        return path

    def load(self, name: str, source: str | None = None, target: str = "") -> PipelineDefinition:
        if source is not None:
            self.write(name, source)
        sys.modules.pop(name, None)
        self.loaded.append(name)
        definition, _ = load_pipeline(
            str(self.root / f"{name}.py") + (f":{target}" if target else "")
        )
        return definition

    def cleanup(self) -> None:
        for name in self.loaded:
            sys.modules.pop(name, None)


@contextlib.contextmanager
def shared_project(
    request: pytest.FixtureRequest, backend: str, name: str
) -> Iterator[tuple[Path, PipelineFiles]]:
    """A project folder for a fixture of module scope, its ledger on ``backend``.

    ``backend`` is ``sqlite`` (a file beside the folder) or ``postgresql`` (a new database
    on the session's server). The folder is on ``sys.path`` and the pipeline modules
    loaded through the :class:`PipelineFiles` given are forgotten when the block ends.
    """
    from tests.conftest import new_postgres_database

    root = request.getfixturevalue("tmp_path_factory").mktemp(name) / "project"
    root.mkdir()
    if backend == "sqlite":
        url = f"sqlite:///{root.parent / 'ledger.db'}"
    else:
        url = new_postgres_database(request.getfixturevalue("postgres_cluster"))
    (root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{url}"\n')
    files = PipelineFiles(root)
    sys.path.insert(0, str(root))
    try:
        yield root, files
    finally:
        files.cleanup()
        sys.path.remove(str(root))


@pytest.fixture
def project_root(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "pipetrail.toml").write_text("[pipetrail]\n")
    return root


@pytest.fixture
def files(project_root: Path) -> Iterator[PipelineFiles]:
    helper = PipelineFiles(project_root)
    if str(project_root) not in sys.path:
        sys.path.insert(0, str(project_root))
    yield helper
    helper.cleanup()
    if str(project_root) in sys.path:
        sys.path.remove(str(project_root))


@pytest.fixture
def project(project_root: Path) -> Iterator[Project]:
    proj = Project.at(project_root)
    yield proj
    proj.close()


@pytest.fixture
def unique() -> Callable[[str], str]:
    def make(prefix: str) -> str:
        return f"{prefix}_{uuid.uuid4().hex[:8]}"

    return make


def statuses(run: Any) -> dict[str, str]:
    """node id -> step run status of a run."""
    return {s["node_id"]: s["status"] for s in run.steps()}


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    """A two-worker Dask LocalCluster's client, shared by the tests of one module.

    One cluster per module, not per session: some tests kill workers or interrupt runs
    with tasks in flight, and what they leave behind must not reach another module's
    tests. Tests that need both workers wait for them first.
    """
    import distributed  # the dask extra is part of the test install: missing, it fails

    from pipetrail.execution.executors.dask_cluster import _local_cluster

    cluster, client = _local_cluster(distributed, 2)
    yield client
    client.close()
    cluster.close()


@pytest.fixture(params=["processes", "dask"])
def executor(request: pytest.FixtureRequest) -> Executor:
    """The processes executor (two workers), then the Dask one on :func:`dask_client`."""
    from pipetrail.execution.executors.dask_cluster import DaskExecutor
    from pipetrail.execution.executors.processes import ProcessExecutor

    if request.param == "processes":
        return ProcessExecutor(workers=2)
    client = request.getfixturevalue("dask_client")
    # A test before may have killed a worker: wait until its nanny has restarted it, so a
    # run meets both workers (two tasks on one dying worker would both be lost).
    client.wait_for_workers(2, timeout=60)
    return DaskExecutor(client=client)


@pytest.fixture
def no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave out the OpenTelemetry variables of the environment the tests run in."""
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
        "OTEL_TRACES_EXPORTER",
        "OTEL_SERVICE_NAME",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def otlp_collector() -> Iterator[OtlpReceiver]:
    """A local OTLP/HTTP receiver of spans, stopped after the test."""
    yield from otlp_receiver()
