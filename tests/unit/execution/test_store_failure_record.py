"""A run whose store fails before it is recorded: its start is recorded without stored blobs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from pipetrail import pipeline, step
from pipetrail.errors import StoreError
from pipetrail.execution.project import Project

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path


@step
def one() -> int:
    return 1


@pipeline
def tiny() -> int:
    return one()


def test_the_recorded_start_names_no_environment_blob_and_the_ledger_verifies(
    make_project: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = Project.discover(make_project())

    def broken() -> None:
        raise StoreError("the store is gone")

    monkeypatch.setattr(project.store, "sync", broken)
    with pytest.raises(StoreError, match="the store is gone"):
        tiny.with_options(project=project).run()
    events = project.ledger.db.rows("SELECT kind, payload FROM events ORDER BY seq")
    started = [json.loads(payload) for kind, payload in events if kind == "run.started"]
    assert len(started) == 1
    assert started[0]["environment"] is None
    assert "params_files" not in started[0]
    assert [kind for kind, _ in events][-1] == "run.failed"
    assert project.ledger.verify().ok
    project.close()
