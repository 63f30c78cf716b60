"""Finding each step run's source text, from the step events or, for older runs, by fingerprint."""

from __future__ import annotations

import json
from typing import Any

from pipetrail.ledger import Reader
from pipetrail.lineage.exports.collect import _code_sources

OLD = "blake3:" + "1" * 64
NEW = "blake3:" + "2" * 64
OTHER = "blake3:" + "3" * 64


class CannedReader(Reader):
    """Answers the three queries _code_sources makes from canned rows."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events

    def fetch(self, sql: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        params = params or {}
        if "FROM events" in sql:
            return [
                {
                    "seq": seq,
                    "ts": "2026-01-01T00:00:00.000000Z",
                    "kind": "step.completed",
                    "payload": json.dumps({"run_id": "R", "node_id": "n", "step": "train", **e}),
                }
                for seq, e in enumerate(self.events, 1)
            ]
        if "FROM step_runs" in sql:
            return [{"first_seq": 50}] if params["c"] == "blake3:fp" else []
        # Code artifacts at or before seq 50, newest first; meta as stored text.
        rows = [
            {"digest": NEW, "meta": '{"step":"train"}', "first_seq": 70},
            {"digest": OTHER, "meta": '{"step":"load"}', "first_seq": 45},
            {"digest": OLD, "meta": '{"step":"train"}', "first_seq": 40},
        ]
        return [r for r in rows if r["first_seq"] <= params["seq"]]


def _step(step_run_id: str, step: str, code_digest: str) -> dict[str, Any]:
    return {"step_run_id": step_run_id, "step": step, "code_digest": code_digest}


def test_the_step_events_name_the_source_text() -> None:
    reader = CannedReader([{"step_run_id": "S1", "code_source": NEW}])
    assert _code_sources(reader, "R", [_step("S1", "train", "blake3:fp")]) == {"S1": NEW}


def test_older_runs_use_the_code_stored_with_the_first_run_of_the_fingerprint() -> None:
    reader = CannedReader([{"step_run_id": "S1"}])
    steps = [_step("S1", "train", "blake3:fp"), _step("S2", "train", "blake3:unknown")]
    assert _code_sources(reader, "R", steps) == {"S1": OLD}
