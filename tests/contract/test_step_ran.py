"""Whether any step run of a step is recorded (Reader.step_ran), on every metadata backend.

A first run of a step decides its cache misses from this answer, without one lookup per
node (pipetrail.execution.run_node): it must find a step run of any pipeline, whatever
the order of the pipelines' names, and in any state.
"""

from __future__ import annotations

import pytest

from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.ledger import Ledger

pytestmark = pytest.mark.postgres

TS = "2026-01-01T00:00:00.000000Z"
FINGERPRINT = "blake3:" + "f" * 64


def _run(run_id: str, pipeline: str, steps: list[str], *, end: bool = True) -> list[EventDraft]:
    """A run of ``pipeline`` that started one step run of each of ``steps``."""
    drafts = [
        EventDraft(
            EventKind.RUN_STARTED,
            {
                "run_id": run_id, "pipeline": pipeline, "pipeline_fingerprint": FINGERPRINT,
                "owner": "me", "host": "h", "process": "1", "params": {}, "seed": 7,
                "git": None, "environment": None, "started_at": TS, "steps_total": len(steps),
            },
            run_id=run_id,
        )
    ]  # fmt: skip
    for i, step in enumerate(steps):
        payload = {
            "step_run_id": f"{run_id}-S{i}", "run_id": run_id, "node_id": f"{step}{i}",
            "step": step, "pipeline": pipeline, "seed": 7, "started_at": TS,
        }  # fmt: skip
        drafts.append(EventDraft(EventKind.STEP_STARTED, payload, run_id=run_id))
    if end:
        drafts.append(
            EventDraft(EventKind.RUN_COMPLETED, {"run_id": run_id, "ended_at": TS}, run_id)
        )
    return drafts


def test_a_step_run_of_any_pipeline_is_found(metadata_url: str) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    try:
        assert not ledger.reader().step_ran("train")  # an empty ledger
        ledger.append(_run("R1", "mid", ["load", "train"]))
        ledger.append(_run("R2", "alpha", ["clean"]))
        ledger.append(_run("R3", "zulu", ["score"], end=False))  # still running
        reader = ledger.reader()
        assert [reader.step_ran(s) for s in ("clean", "load", "train", "score")] == [True] * 4
        assert not reader.step_ran("predict")
        assert not reader.step_ran("alpha")  # a pipeline's name is not a step's
    finally:
        ledger.close()
