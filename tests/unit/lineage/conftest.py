"""A hand-made ledger: projection rows written directly, for exact lineage shapes.

Only the columns the lineage queries read carry meaning; the rest hold placeholders.
"""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

import pytest

from pipetrail.ledger.ledger import Ledger
from pipetrail.ledger.queries import SqliteReader

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TS = "2026-01-01T00:00:00.000000Z"


def digest(prefix: str) -> str:
    """A digest starting with ``prefix`` (hex), padded with zeros."""
    return "blake3:" + prefix.ljust(64, "0")


class LedgerBuilder:
    def __init__(self, path: Path) -> None:
        Ledger.open(f"sqlite:///{path}", actor="test").close()
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.seq = 0
        self.reader = SqliteReader(path)

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def run(self, run_id: str, pipeline: str = "p") -> str:
        seq = self._next()
        self.conn.execute(
            "INSERT INTO runs (run_id, pipeline, pipeline_fingerprint, status, owner, host, "
            "process, params, seed, record, started_at, steps_total, first_seq, last_seq) "
            "VALUES (?, ?, 'fp', 'completed', 'me', 'h', '1', '{}', 0, '{}', ?, 0, ?, ?)",
            (run_id, pipeline, TS, seq, seq),
        )
        return run_id

    def artifact(self, value: str, *, meta: dict[str, object] | None = None) -> str:
        self.conn.execute(
            "INSERT INTO artifacts (digest, blob, serializer, type_name, size, meta, role, "
            "created_at, first_seq) VALUES (?, ?, 'json', 'builtins.int', 1, ?, 'output', ?, ?)",
            (value, value, json.dumps(meta or {}), TS, self._next()),
        )
        return value

    def source(self, run_id: str, path: str, value: str, *, stored: bool = True) -> str:
        self.conn.execute(
            "INSERT INTO sources (run_id, path, digest, size, mtime_ns, observed_at, "
            "by_reference, seq) VALUES (?, ?, ?, 10, 0, ?, ?, ?)",
            (run_id, path, value, TS, int(not stored), self._next()),
        )
        return value

    def step(
        self,
        step_run_id: str,
        run_id: str,
        inputs: dict[str, str],
        outputs: dict[str, str],
        *,
        node: str = "s",
        reused: str | None = None,
        params: dict[str, object] | None = None,
    ) -> str:
        seq = self._next()
        components = {"params": params or {}, "inputs": inputs}
        self.conn.execute(
            "INSERT INTO step_runs (step_run_id, run_id, node_id, step, pipeline, status, "
            "cache_decision, reused_step_run_id, code_digest, components, started_at, "
            "ended_at, first_seq, last_seq) VALUES (?, ?, ?, ?, 'p', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                step_run_id, run_id, node, node.split("[")[0],
                "cached" if reused else "completed", "hit" if reused else "miss", reused,
                digest("c0de"), json.dumps(components), TS, TS, seq, seq,
            ),
        )  # fmt: skip
        rows = [(step_run_id, "in", n, d, run_id) for n, d in inputs.items()]
        rows += [(step_run_id, "out", n, d, run_id) for n, d in outputs.items()]
        self.conn.executemany("INSERT INTO step_run_io VALUES (?, ?, ?, ?, ?)", rows)
        return step_run_id


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[LedgerBuilder]:
    builder = LedgerBuilder(tmp_path / "ledger.db")
    yield builder
    builder.reader.close()
    builder.conn.close()
