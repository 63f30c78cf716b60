"""Lineage on real pipelines: upstream, downstream, paths, cached runs, references, formats.

The library queries run on SQLite and on a real PostgreSQL (``metadata_url``); the CLI
tests drive ``pipetrail lineage`` through click's CliRunner on a SQLite project.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner

from pipetrail.cli.lineage_cmd import lineage
from pipetrail.cli.main import cli
from pipetrail.errors import AmbiguousPrefixError, NotFoundError
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.lineage.queries import downstream, path, resolve_ref, upstream
from pipetrail.lineage.render import mermaid_id
from tests.conftest import BACKENDS
from tests.integration.conftest import shared_project

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from pipetrail.execution.run import Run
    from pipetrail.ledger import Reader
    from pipetrail.lineage.graph import LineageGraph
    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

STATS = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def read(path: Path) -> str:
    return path.read_text()

@step
def words(text: str, lower: bool = True) -> list[str]:
    return (text.lower() if lower else text).split()

@step
def count(ws: list[str], minimum: int = 0) -> int:
    return sum(1 for w in ws if len(w) > minimum)

@step
def report(n: int, ws: list[str], title: str = "words") -> dict[str, object]:
    return {"title": title, "n": n, "first": ws[:2]}

@step
def same(ws: list[str]) -> list[str]:
    return ws

@pipeline
def stats(minimum: int = 3):
    ws = words(read(source("data/text.txt")))
    return report(count(ws, minimum=minimum), ws)

@pipeline
def other():
    return count(words(read(source("data/other.txt"))), minimum=1)

@pipeline
def loop():
    return same(same(words(read(source("data/text.txt")))))
"""


@dataclass
class Recorded:
    """Three runs of ``stats`` (executed, all cached, minimum=4) and one of ``other``."""

    project: Project
    reader: Reader
    runs: list[Run]
    other: Run
    source: str  # digest of data/text.txt

    def steps(self, run: Run) -> dict[str, dict[str, Any]]:
        return {s["node_id"]: s for s in self.reader.step_runs(run.id)}


def _record(files: PipelineFiles, root: Path, name: str, metadata: str | None) -> Recorded:
    if metadata:
        (root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata}"\n')
    (root / "data").mkdir()
    (root / "data" / "text.txt").write_text("The quick brown fox jumps over the lazy dog\n")
    (root / "data" / "other.txt").write_text("an unrelated file\n")
    stats = files.load(name, STATS, target="stats")
    other = files.load(name, None, target="other")
    project = Project.at(root)
    runs = [
        run_pipeline(stats, params, project, RunOptions()) for params in ({}, {}, {"minimum": 4})
    ]
    unrelated = run_pipeline(other, {}, project, RunOptions())
    reader = project.reader()
    source = reader.sources(runs[0].id)[0]["digest"]
    return Recorded(project, reader, runs, unrelated, source)


@pytest.fixture(scope="module")
def recorded(request: pytest.FixtureRequest) -> Iterator[Recorded]:
    """The runs on SQLite, made once for the module's tests that only read them."""
    with shared_project(request, "sqlite", "lineage") as (root, files):
        rec = _record(files, root, "lineage_stats", None)
        yield rec
        rec.project.close()


@pytest.fixture(scope="module", params=BACKENDS)
def recorded_on(request: pytest.FixtureRequest) -> Iterator[Recorded]:
    """The runs on each backend, made once for the module's tests that only read them."""
    with shared_project(request, request.param, f"lineage-{request.param}") as (root, files):
        rec = _record(files, root, f"lineage_stats_{request.param}", None)
        yield rec
        rec.project.close()


@pytest.fixture
def own_recorded_on(
    metadata_url: str, files: PipelineFiles, project_root: Path, unique: Callable[[str], str]
) -> Iterator[Recorded]:
    """The runs on each backend, for a test that records more."""
    rec = _record(files, project_root, unique("stats"), metadata_url)
    yield rec
    rec.project.close()


def _chain(graph: LineageGraph) -> list[str]:
    """Node ids of a path graph, from its root along its edges."""
    order = [graph.roots[0]]
    while nxt := [e.target for e in graph.edges_from(order[-1])]:
        order.append(nxt[0])
    return order


# -- library, on SQLite and PostgreSQL ------------------------------------------------------
@pytest.mark.postgres
def test_upstream_reaches_the_source_and_lists_each_step(recorded_on: Recorded) -> None:
    rec = recorded_on
    first = rec.runs[0]
    graph = upstream(rec.reader, first.result)
    recorded = rec.steps(first)
    assert {s.node_id for s in graph.step_runs} == {"read", "words", "count", "report"}
    for node in graph.step_runs:
        row = recorded[node.node_id]
        assert node.step_run_id == row["step_run_id"]
        assert node.run_id == first.id
        assert node.code_digest == row["code_digest"]
        assert (node.code_digest or "").startswith("blake3:")
        assert (node.started_at, node.ended_at) == (row["started_at"], row["ended_at"])
        assert node.status == "completed"
        assert node.cache_decision == "miss"
    params = {s.node_id: s.params for s in graph.step_runs}
    assert params == {"read": {}, "words": {"lower": True}, "count": {"minimum": 3},
                      "report": {"title": "words"}}  # fmt: skip
    source = graph.artifact(rec.source)
    assert source is not None
    assert (source.kind, source.paths) == ("source", ("data/text.txt",))
    assert graph.depth(rec.source) == 3  # report <- words (via ws) <- read <- source
    assert graph.roots == (first.result,)
    assert [r.run_id for r in graph.runs] == [first.id]
    read = recorded["read"]["step_run_id"]
    assert [(e.source, e.kind, e.name) for e in graph.edges_to(read)] == [
        (rec.source, "input", "path")
    ]
    report = graph.artifact(first.result)
    assert report is not None
    assert (report.type_name, report.role) == ("builtins.dict", "output")


@pytest.mark.postgres
def test_downstream_of_a_source_finds_every_derived_artifact_and_run(
    recorded_on: Recorded,
) -> None:
    rec = recorded_on
    graph = downstream(rec.reader, rec.source.removeprefix("blake3:")[:16])
    derived = {
        d for run in rec.runs for s in rec.steps(run).values() for d in s["outputs"].values()
    }
    assert {a.digest for a in graph.artifacts} == derived | {rec.source}
    assert {r.run_id for r in graph.runs} == {run.id for run in rec.runs}
    every = {s["step_run_id"] for run in rec.runs for s in rec.steps(run).values()}
    assert {s.step_run_id for s in graph.step_runs} == every
    assert rec.other.id not in {s.run_id for s in graph.step_runs}
    assert {rec.runs[0].result, rec.runs[2].result} <= {a.digest for a in graph.artifacts}
    reads = [s for s in graph.step_runs if s.node_id == "read"]
    assert {graph.depth(s.step_run_id) for s in reads} == {1}


@pytest.mark.postgres
def test_cached_runs_show_the_step_run_they_reused(recorded_on: Recorded) -> None:
    rec = recorded_on
    first, cached = rec.steps(rec.runs[0]), rec.steps(rec.runs[1])
    graph = upstream(rec.reader, rec.runs[1].id)
    ids = {s.step_run_id for s in graph.step_runs}
    assert ids == {s["step_run_id"] for s in (*first.values(), *cached.values())}
    for node_id, row in cached.items():
        node = graph.step_run(row["step_run_id"])
        assert node is not None
        assert (node.status, node.cache_decision) == ("cached", "hit")
        assert node.reused_step_run_id == first[node_id]["step_run_id"]
        reuse = [e for e in graph.edges_from(node.step_run_id) if e.kind == "reuses"]
        assert [e.target for e in reuse] == [first[node_id]["step_run_id"]]
    # The same output digest: its provenance is the step run that executed.
    by_artifact = upstream(rec.reader, rec.runs[1].result)
    assert {s.step_run_id for s in by_artifact.step_runs} == {
        s["step_run_id"] for s in first.values()
    }
    one = upstream(rec.reader, cached["report"]["step_run_id"])
    assert cached["report"]["step_run_id"] in one.roots
    assert first["read"]["step_run_id"] in {s.step_run_id for s in one.step_runs}


@pytest.mark.postgres
def test_path_between_a_source_and_a_final_output(recorded_on: Recorded) -> None:
    rec = recorded_on
    steps = rec.steps(rec.runs[0])
    expected = [
        rec.source,
        steps["read"]["step_run_id"],
        steps["read"]["outputs"]["output"],
        steps["words"]["step_run_id"],
        steps["words"]["outputs"]["output"],
        steps["report"]["step_run_id"],
        rec.runs[0].result,
    ]
    forward = path(rec.reader, rec.source, rec.runs[0].result)
    backward = path(rec.reader, rec.runs[0].result[:20], rec.source)
    assert forward is not None
    assert backward is not None
    assert _chain(forward) == _chain(backward) == expected
    assert len(forward.edges) == len(expected) - 1
    assert path(rec.reader, rec.runs[0].result, rec.other.result) is None


@pytest.mark.postgres
def test_depth_limits_and_cycles_end(
    own_recorded_on: Recorded, files: PipelineFiles, unique: Callable[[str], str]
) -> None:
    rec = own_recorded_on
    near = upstream(rec.reader, rec.runs[0].result, max_depth=1)
    assert [s.node_id for s in near.step_runs] == ["report"]
    assert len(near.artifacts) == 3  # the output and its two inputs
    first_hop = downstream(rec.reader, rec.source, max_depth=1)
    assert {s.node_id for s in first_hop.step_runs} == {"read"}
    assert len(upstream(rec.reader, rec.runs[0].result, max_depth=0).step_runs) == 0
    # `same` returns its input: the digest is an input and an output of one step run.
    loop = files.load(unique("loop"), STATS, target="loop")
    looped = run_pipeline(loop, {}, rec.project, RunOptions())
    graph = upstream(rec.reader, looped.result)
    assert {s.node_id for s in graph.step_runs} >= {"same", "words", "read"}
    assert rec.source in {a.digest for a in graph.artifacts}
    assert downstream(rec.reader, looped.result).step_runs


@pytest.mark.postgres
def test_equal_digests_from_unrelated_runs_are_not_linked(recorded_on: Recorded) -> None:
    rec = recorded_on
    # `other` counts 3 long words in data/other.txt; `stats` with minimum=4 counts 3 too.
    three = rec.steps(rec.other)["count"]["outputs"]["output"]
    assert rec.steps(rec.runs[2])["count"]["outputs"]["output"] == three
    other_source = rec.reader.sources(rec.other.id)[0]["digest"]
    # The report's provenance is its own run's count, not every writer of the digest 3.
    report = upstream(rec.reader, rec.runs[2].result)
    assert other_source not in {a.digest for a in report.artifacts}
    assert rec.other.id not in {r.run_id for r in report.runs}
    # Asked about the digest itself, both ways it was made are its provenance.
    both = upstream(rec.reader, three)
    assert {rec.source, other_source} <= {a.digest for a in both.artifacts}
    assert path(rec.reader, other_source, rec.runs[2].result) is None


@pytest.mark.postgres
def test_downstream_of_an_executed_step_run_reaches_the_runs_that_reused_it(
    recorded_on: Recorded,
) -> None:
    rec = recorded_on
    read = rec.steps(rec.runs[0])["read"]["step_run_id"]
    graph = downstream(rec.reader, read)
    assert {r.run_id for r in graph.runs} == {run.id for run in rec.runs}
    reusers = {rec.steps(run)["read"]["step_run_id"] for run in rec.runs[1:]}
    assert reusers <= {s.step_run_id for s in graph.step_runs}
    assert {graph.depth(r) for r in reusers} == {0}
    assert rec.runs[2].result in {a.digest for a in graph.artifacts}


# -- references -------------------------------------------------------------------------------
def test_references_resolve_by_prefix_and_kind(recorded: Recorded) -> None:
    rec = recorded
    run = rec.runs[2]
    step_run = rec.steps(run)["count"]["step_run_id"]
    assert resolve_ref(rec.reader, "latest").id == rec.other.id
    assert resolve_ref(rec.reader, run.id.lower()[:24]).kind == "run"
    assert resolve_ref(rec.reader, step_run).kind == "step_run"
    assert resolve_ref(rec.reader, rec.source.upper()).id == rec.source
    assert resolve_ref(rec.reader, rec.source[7:19]).id == rec.source


def test_ambiguous_prefixes_name_what_matched(recorded: Recorded) -> None:
    # Ids are time-ordered: every run and step run id starts with "0".
    with pytest.raises(AmbiguousPrefixError, match=r"'0' matches several objects \(.*run 0"):
        upstream(recorded.reader, "0")
    with pytest.raises(AmbiguousPrefixError, match=r"step run 0"):
        resolve_ref(recorded.reader, recorded.runs[0].id[:2])


def test_unknown_references_are_not_found(recorded: Recorded) -> None:
    rec = recorded
    for ref in ("blake3:" + "0" * 64, "zz-not-an-id", "", "blake3:"):
        with pytest.raises(NotFoundError, match="nothing matches"):
            downstream(rec.reader, ref)
    with pytest.raises(NotFoundError, match="nothing matches"):
        path(rec.reader, rec.source, "f" * 40)


# -- CLI ----------------------------------------------------------------------------------
@pytest.fixture
def invoke(recorded: Recorded, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    monkeypatch.chdir(recorded.project.root)
    group = type(cli)(name="pipetrail", commands=dict(cli.commands))  # the real error mapping
    group.add_command(lineage)

    def run(*args: str) -> Any:
        return CliRunner().invoke(group, ["lineage", *args], catch_exceptions=False)

    return run


def test_cli_tree_is_the_default(invoke: Callable[..., Any], recorded: Recorded) -> None:
    result = invoke(recorded.runs[0].result[:14])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"upstream of artifact {recorded.runs[0].result}")
    assert "source data/text.txt" in result.output
    for name in ("read", "words", "count", "report", "minimum=3"):
        assert name in result.output
    down = invoke(recorded.source, "--down", "--depth", "2")
    assert down.exit_code == 0, down.output
    assert "downstream of artifact" in down.output
    assert "cached" in down.output


def test_cli_formats(invoke: Callable[..., Any], recorded: Recorded) -> None:
    ref = recorded.runs[1].id
    data = json.loads(invoke(ref, "--format", "json").output)
    assert data == json.loads(invoke(ref, "--json").output)
    graph = upstream(recorded.reader, ref)
    assert {n["id"] for n in data["nodes"]} == set(graph.node_ids)
    assert data["nodes"] == sorted(data["nodes"], key=lambda n: (n["depth"], n["kind"], n["id"]))
    assert data["counts"] == {"artifacts": 5, "step_runs": 8, "runs": 2}
    assert data["target"] == {"kind": "run", "id": ref}
    dot = invoke(ref, "--format", "dot").output
    mermaid = invoke(ref, "--format", "mermaid").output
    assert dot.startswith("digraph lineage {")
    assert mermaid.startswith("flowchart LR")
    for node_id in graph.node_ids:
        assert f'"{node_id}"' in dot
        assert mermaid_id(node_id) in mermaid
    assert "style=dashed" in dot  # the reuses edges of the cached run
    assert "-.->" in mermaid


def test_cli_path_and_errors(invoke: Callable[..., Any], recorded: Recorded) -> None:
    result = invoke("path", recorded.source[7:20], recorded.runs[0].result, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["direction"] == "path"
    none = invoke("path", recorded.runs[0].result, recorded.other.result)
    assert none.exit_code == 2
    assert "no path between" in none.output
    missing = invoke("ffffffffffff")
    assert missing.exit_code == 2
    assert "nothing matches 'ffffffffffff'" in missing.output
    ambiguous = invoke(recorded.runs[0].id[:2], "--down")
    assert ambiguous.exit_code == 2
    assert "matches several objects" in ambiguous.output
    assert invoke("graph", recorded.source, "--down").exit_code == 0
