"""A step's end event is encoded as the reference encoder writes it (execution.step_result)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pipetrail import pipeline, step
from pipetrail.execution.step_result import _MADE_PLAIN, _end_plain
from pipetrail.hashing.canonical import reference_json

if TYPE_CHECKING:
    from pathlib import Path


@step
def halve(x: float, xs: list[float]) -> float:
    print("halving")
    return x / 2 + sum(xs) * 1e-7


@pipeline
def halving() -> float:
    return halve(halve(3.0, [0.5, 1e-9]), [2.5])


def test_the_members_made_of_strings_and_integers_are_not_walked() -> None:
    assert _end_plain(frozenset({"components"})) == {"components", *_MADE_PLAIN}
    assert _end_plain(frozenset()) == _MADE_PLAIN


def test_every_step_event_is_the_reference_encoding_of_its_payload(tmp_path: Path) -> None:
    run = halving.with_options(project=tmp_path).run()
    project = run.project
    texts = [
        event.payload_text
        for event in project.ledger.iter_events()
        if event.run_id == run.id and event.kind.startswith("step.")
    ]
    assert len(texts) == 4
    for text in texts:
        assert reference_json(json.loads(text)) == text
