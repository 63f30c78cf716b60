"""A cache hit's record is the same whether it is encoded in full or from what was checked.

The ``step.cached`` event of a hit is encoded without walking again the key components its
cache key just checked, and a cache lookup reuses the chain hashes this process computed
when it appended the events it reads. Neither may change a byte of the record nor hide
an edit: the stored text is the canonical text of its payload, ``audit verify`` finds
nothing, and an event edited after this very process appended it is refused.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.errors import TamperedLedgerError
from pipetrail.execution.integrity import verify_ledger
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.hashing.canonical import checked_canonical_json, reference_json
from tests.integration.conftest import statuses
from tests.support.ledger_rows import stored_events
from tests.support.pipelines import RECORDS

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pipetrail.execution.project import Project
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration


def test_hit_events_hold_the_canonical_text_of_their_payloads(
    project: Project, project_root: Path, files: PipelineFiles, unique: Callable[[str], str]
) -> None:
    pipe = files.load(unique("pipe"), RECORDS)
    first = run_pipeline(pipe, {}, project, RunOptions())
    second = run_pipeline(pipe, {}, project, RunOptions())
    third = run_pipeline(pipe, {"offset": 1e-9}, project, RunOptions())
    assert set(statuses(first).values()) == {"completed"}
    assert set(statuses(second).values()) == {"cached"}
    assert statuses(third)["make"] == "cached"
    hits = stored_events(project_root, "step.cached")
    assert len(hits) == 4
    for *_, text in hits:
        payload: dict[str, Any] = json.loads(text)
        # What the full encoding of the payload writes, by orjson and by the reference.
        assert text == checked_canonical_json(payload)[0] == reference_json(payload)
        assert payload["decision"] == "hit"
    report = verify_ledger(project)
    assert report["ok"] is True, report


def test_an_event_edited_after_this_process_appended_it_is_refused(
    project: Project, project_root: Path, files: PipelineFiles, unique: Callable[[str], str]
) -> None:
    pipe = files.load(unique("pipe"), RECORDS)
    first = run_pipeline(pipe, {}, project, RunOptions())
    label = next(s for s in first.steps() if s["node_id"] == "label")
    (seq, text), *_ = [
        (seq, text)
        for seq, _, text in stored_events(project_root, "step.completed")
        if json.loads(text)["step_run_id"] == label["step_run_id"]
    ]
    edited = text.replace('"decision":"miss"', '"decision":"miss" ')
    assert edited != text
    connection = sqlite3.connect(project_root / ".pipetrail" / "ledger.db")
    try:
        with connection:
            connection.execute("UPDATE events SET payload = ? WHERE seq = ?", (edited, seq))
    finally:
        connection.close()
    # The same process hashed that event when it appended it: the edit still shows.
    with pytest.raises(TamperedLedgerError, match=rf"event {seq} was edited"):
        run_pipeline(pipe, {}, project, RunOptions())
