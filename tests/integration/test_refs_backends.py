"""What a user types as a reference, on each metadata backend: a real prefix, or nothing.

LIKE treats ``%`` and ``_`` as wildcards and ``\\`` as its escape character: a reference
made of them (or an empty one) must match no run, artifact or step run, on SQLite (the
stdlib reader and SQLAlchemy) and on PostgreSQL alike.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import AmbiguousPrefixError, NotFoundError
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.ledger import open_reader
from pipetrail.lineage.refs import resolve_ref
from tests.conftest import BACKENDS
from tests.integration.conftest import shared_project
from tests.integration.test_runner import CHAIN

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pipetrail.ledger import Reader

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

NOT_PREFIXES = ["", "%", "%%", "_", "__", "\\", "\\%", "*", " ", "blake3:", "blake3:%", "%_%"]


@pytest.fixture(scope="module", params=BACKENDS)
def two_runs(request: pytest.FixtureRequest) -> Iterator[tuple[Project, list[str]]]:
    """A project with two runs of the chain, per backend, made once for the module.

    The tests only resolve references in it: they change nothing another test reads.
    """
    with shared_project(request, request.param, f"refs-{request.param}") as (root, files):
        project = Project.at(root)
        try:
            chain = files.load(f"refs_chain_{request.param}", CHAIN)
            yield project, [run_pipeline(chain, {"n": n}, project, RunOptions()).id for n in (2, 3)]
        finally:
            project.close()


@contextlib.contextmanager
def _readers(project: Project) -> Iterator[list[Reader]]:
    # The ledger's own (SQLAlchemy) reader and the cheapest one for the URL (stdlib sqlite3
    # for SQLite files).
    readers = [project.ledger.reader(), open_reader(project.config.metadata_url)]
    try:
        yield readers
    finally:
        for reader in readers:
            reader.close()


@pytest.mark.parametrize("ref", NOT_PREFIXES)
def test_empty_or_wildcard_refs_match_nothing(
    two_runs: tuple[Project, list[str]], ref: str
) -> None:
    project, _ = two_runs
    with _readers(project) as readers:
        for reader in readers:
            for resolve in (reader.resolve_run, reader.resolve_artifact):
                with pytest.raises(NotFoundError) as caught:
                    resolve(ref)
                # Not "matches several": a reference that is no prefix matches nothing.
                assert not isinstance(caught.value, AmbiguousPrefixError), caught.value
            with pytest.raises(NotFoundError) as caught:
                resolve_ref(reader, ref)
            assert not isinstance(caught.value, AmbiguousPrefixError), caught.value


def test_real_prefixes_still_resolve(two_runs: tuple[Project, list[str]]) -> None:
    project, runs = two_runs
    with _readers(project) as readers:
        for reader in readers:
            for run_id in runs:
                assert reader.resolve_run(run_id[:-1]) == run_id
                assert resolve_ref(reader, run_id.lower()).id == run_id
            digest = reader.step_runs(runs[0])[0]["outputs"]["output"]
            assert reader.resolve_artifact(digest[: len("blake3:") + 10]) == digest
            assert reader.resolve_artifact(digest.removeprefix("blake3:")[:10]) == digest
