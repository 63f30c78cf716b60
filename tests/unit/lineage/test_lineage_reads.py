"""The ledger's lineage reads return typed rows with their JSON columns parsed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipetrail.ledger.lineage_reads import (
    _SELECT_STEPS,
    CHUNK,
    ArtifactRow,
    IoRow,
    LineageStepRow,
    SourceRow,
    artifact_rows,
    io_rows,
    path_step_runs,
    prefix_candidates,
    source_rows,
    walk_step_runs,
)
from tests.unit.lineage.conftest import digest

if TYPE_CHECKING:
    from tests.unit.lineage.conftest import LedgerBuilder

RUN = "01JAAAAAAAAAAAAAAAAAAAAAAA"
FIRST, SECOND = "01JAAB0000000000000000000A", "01JAAB0000000000000000000B"


def _chain(ledger: LedgerBuilder) -> tuple[str, str, str]:
    ledger.run(RUN)
    src = ledger.source(RUN, "data/in.csv", digest("5"), stored=False)
    mid = ledger.artifact(digest("a1"), meta={"rows": 3, "columns": ["x", "y"]})
    out = ledger.artifact(digest("b1"))
    ledger.step(FIRST, RUN, {"df": src}, {"out": mid}, node="prep", params={"k": 2})
    ledger.step(SECOND, RUN, {"df": mid}, {"out": out}, node="fit")
    return src, mid, out


def test_walks_return_typed_step_runs_with_parsed_components(ledger: LedgerBuilder) -> None:
    src, _, out = _chain(ledger)
    up = walk_step_runs(ledger.reader, "upstream", "artifact", out, None)
    assert sorted(r.step_run_id for r in up) == [FIRST, SECOND]
    prep = next(r for r in up if r.node_id == "prep")
    assert prep.components["params"] == {"k": 2}
    assert (prep.run_pipeline, prep.run_status, prep.run_owner) == ("p", "completed", "me")
    assert [
        r.step_run_id for r in walk_step_runs(ledger.reader, "upstream", "artifact", out, 1)
    ] == [SECOND]
    assert walk_step_runs(ledger.reader, "downstream", "artifact", src, 0) == []
    down = walk_step_runs(ledger.reader, "downstream", "artifact", src, None)
    assert sorted(r.step_run_id for r in down) == [FIRST, SECOND]
    between = path_step_runs(ledger.reader, ("artifact", src), ("artifact", out))
    assert sorted(r.step_run_id for r in between) == [FIRST, SECOND]


def test_edges_artifacts_and_sources_by_key(ledger: LedgerBuilder) -> None:
    src, mid, out = _chain(ledger)
    assert sorted(io_rows(ledger.reader, [FIRST]), key=lambda r: r.direction) == [
        IoRow(FIRST, "in", "df", src),
        IoRow(FIRST, "out", "out", mid),
    ]
    found = {r.digest: r for r in artifact_rows(ledger.reader, [src, mid, out])}
    assert set(found) == {mid, out}  # the source read by reference is not stored
    assert found[mid] == ArtifactRow(
        mid, "builtins.int", "json", 1, "output", {"rows": 3, "columns": ["x", "y"]}
    )
    assert source_rows(ledger.reader, [src, mid]) == [SourceRow(src, "data/in.csv", 10)]


def test_keys_beyond_one_statement(ledger: LedgerBuilder) -> None:
    _, mid, out = _chain(ledger)
    keys = [digest(f"f{i:x}") for i in range(CHUNK + 5)] + [out, mid]
    assert {r.digest for r in artifact_rows(ledger.reader, keys)} == {mid, out}


def test_prefix_candidates(ledger: LedgerBuilder) -> None:
    src, mid, _ = _chain(ledger)
    assert prefix_candidates(ledger.reader, "artifact", "blake3:a") == [mid]
    assert prefix_candidates(ledger.reader, "artifact", "blake3:5") == [src]
    assert prefix_candidates(ledger.reader, "step_run", "01JAAB") == [FIRST, SECOND]
    assert prefix_candidates(ledger.reader, "run", "01JAAB") == []
    assert prefix_candidates(ledger.reader, "run", "01JA") == [RUN]


def test_the_step_columns_are_the_row_fields() -> None:
    selected = _SELECT_STEPS.split(" FROM ")[0].removeprefix(" SELECT ").split(", ")
    names = [column.split(" AS ")[-1].removeprefix("s.") for column in selected]
    assert tuple(names) == LineageStepRow._fields
