"""Standard exports of real runs: OpenLineage (schema-validated), PROV-JSON, in-toto/SLSA.

Pipelines are written to module files in a temporary project and run for real, with a
pandas DataFrame output (schema facets) and a failing step (FAIL events). The CLI command
is driven through click's test runner inside the ``pipetrail`` group's error handling,
and ``--send`` posts to a small HTTP receiver on 127.0.0.1.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import socket
import subprocess
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner
from prov.model import ProvActivity, ProvDocument

from pipetrail.capture import current_host, current_owner, process_identity
from pipetrail.cli.export_cmd import export
from pipetrail.cli.main import _Group
from pipetrail.core.clock import format_ts, new_id, utcnow
from pipetrail.errors import StepFailedError
from pipetrail.execution.explain import run_summary
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline
from pipetrail.ledger import EventDraft, EventKind
from pipetrail.lineage.exports import (
    CollectorError,
    ExportError,
    OpenLineageHttpEmitter,
    RunNotFinishedError,
    collect_run,
    export_run,
    openlineage_events,
    render_export,
    run_uuid,
    send_openlineage,
)
from pipetrail.lineage.exports.prov import entity_id
from tests.unit.lineage_exports.ol_schema import validate_event

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from tests.integration.conftest import PipelineFiles

pytestmark = pytest.mark.integration

PEOPLE = """
from pathlib import Path

import pandas as pd

from pipetrail import pipeline, source, step


@step
def load(raw: Path) -> pd.DataFrame:
    return pd.read_csv(raw)


@step(outputs=("adults", "count"))
def split(df: pd.DataFrame, min_age: int = 18):
    adults = df[df.age >= min_age].reset_index(drop=True)
    return adults, len(adults)


@step
def summarize(adults: pd.DataFrame) -> dict[str, float]:
    return {"mean_age": float(adults.age.mean())}


@pipeline
def people(min_age: int = 18):
    adults, count = split(load(source("data/people.csv")), min_age=min_age)
    return summarize(adults), count
"""

FRAGILE = """
from pathlib import Path

import pandas as pd

from pipetrail import pipeline, source, step


@step
def load(raw: Path) -> pd.DataFrame:
    return pd.read_csv(raw)


@step
def explode(df: pd.DataFrame) -> int:
    raise ValueError("boom: bad rows")


@pipeline
def fragile():
    return explode(load(source("data/people.csv")))
"""

HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture
def people_csv(project_root: Path) -> Path:
    path = project_root / "data" / "people.csv"
    path.parent.mkdir()
    path.write_text("name,age\nada,36\nbob,12\ncy,71\n")
    return path


@pytest.fixture
def run_people(
    files: PipelineFiles, project: Project, people_csv: Path, unique: Callable[[str], str]
) -> Callable[..., str]:
    definition = files.load(unique("people"), PEOPLE)

    def run(**params: Any) -> str:
        return run_pipeline(definition, params, project, RunOptions()).id

    return run


@pytest.fixture
def failed_run(
    files: PipelineFiles, project: Project, people_csv: Path, unique: Callable[[str], str]
) -> str:
    definition = files.load(unique("fragile"), FRAGILE)
    with pytest.raises(StepFailedError) as info:
        run_pipeline(definition, {}, project, RunOptions())
    return info.value.run_id


def _events(project: Project, run_id: str) -> list[dict[str, Any]]:
    return openlineage_events(collect_run(project, run_id))


def _by_job(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        found.setdefault(event["job"]["name"], []).append(event)
    return found


def _names(datasets: list[dict[str, Any]]) -> set[str]:
    return {d["name"] for d in datasets}


# -- OpenLineage -------------------------------------------------------------------------
def test_openlineage_events_validate_and_cover_the_run_and_every_step(
    run_people: Callable[..., str], project: Project, people_csv: Path
) -> None:
    run_id = run_people()
    events = export_run(project, run_id, "openlineage")
    assert isinstance(events, list)
    used = {url for event in events for url in validate_event(event)}
    for facet in ("ParentRunFacet", "SchemaDatasetFacet", "DatasetVersionDatasetFacet"):
        assert any(facet in url for url in used), facet
    summary = run_summary(project.reader(), run_id)
    steps = {s["node_id"]: s for s in summary["steps"]}
    jobs = _by_job(events)
    assert set(jobs) == {"people", "people.load", "people.split", "people.summarize"}
    assert events[0]["job"]["name"] == events[-1]["job"]["name"] == "people"
    assert {e["job"]["namespace"] for e in events} == {f"pipetrail://{project.root.name}"}

    start, end = jobs["people"]
    assert (start["eventType"], end["eventType"]) == ("START", "COMPLETE")
    assert (start["eventTime"], end["eventTime"]) == (summary["started_at"], summary["ended_at"])
    assert start["run"]["runId"] == end["run"]["runId"] == run_uuid(run_id)
    (source,) = start["inputs"]
    assert source["namespace"] == f"file://{summary['host']}"
    assert source["name"] == people_csv.resolve().as_posix()
    assert source["facets"]["version"]["datasetVersion"] == summary["sources"][0]["digest"]
    # The pipeline's outputs are the final ones; intermediate tables belong to the steps.
    assert _names(end["outputs"]) == {"people.split.count", "people.summarize.output"}

    run_ids = set()
    for node_id, step in steps.items():
        step_start, step_end = jobs[f"people.{node_id}"]
        assert (step_start["eventType"], step_end["eventType"]) == ("START", "COMPLETE")
        assert step_start["eventTime"] == step["started_at"]
        assert step_end["eventTime"] == step["ended_at"]
        assert step_start["run"]["runId"] == run_uuid(step["step_run_id"])
        parent = step_end["run"]["facets"]["parent"]
        assert parent["run"]["runId"] == run_uuid(run_id)
        assert parent["job"] == {"namespace": start["job"]["namespace"], "name": "people"}
        for name, digest in step["outputs"].items():
            (dataset,) = [o for o in step_end["outputs"] if o["name"] == f"people.{node_id}.{name}"]
            assert dataset["facets"]["version"]["datasetVersion"] == digest
        run_ids.add(step_start["run"]["runId"])
    assert len(run_ids) == 3
    assert all(uuid.UUID(r).version == 7 for r in run_ids)

    load_end = jobs["people.load"][1]
    (table,) = load_end["outputs"]
    fields = table["facets"]["schema"]["fields"]
    assert [(f["name"], f["type"]) for f in fields] == [("name", "STRING"), ("age", "BIGINT")]
    assert table["outputFacets"]["outputStatistics"]["rowCount"] == 3
    # The consumer names its input after the producing node, with the same version.
    (adults_in,) = jobs["people.summarize"][0]["inputs"]
    assert adults_in["name"] == "people.split.adults"
    assert [(f["name"], f["type"]) for f in adults_in["facets"]["schema"]["fields"]] == [
        ("name", "STRING"),
        ("age", "BIGINT"),
    ]


def test_exports_are_deterministic(run_people: Callable[..., str], project: Project) -> None:
    run_id = run_people()
    for format_name in ("openlineage", "prov", "intoto"):
        first = render_export(export_run(project, run_id, format_name), format_name)
        assert render_export(export_run(project, run_id, format_name), format_name) == first


def test_a_cached_run_completes_every_step_from_the_cache(
    run_people: Callable[..., str], project: Project
) -> None:
    first, second = run_people(), run_people()
    events = _events(project, second)
    for event in events:
        validate_event(event)
    original = {e["job"]["name"]: e for e in _events(project, first) if e["outputs"]}
    for event in events:
        if event["job"]["name"] == "people" or event["eventType"] != "COMPLETE":
            continue
        facet = event["run"]["facets"]["pipetrail_step"]
        assert facet["cacheDecision"] == "hit"
        assert facet["reusedStepRunId"]
        versions = {o["name"]: o["facets"]["version"] for o in event["outputs"]}
        before = {
            o["name"]: o["facets"]["version"] for o in original[event["job"]["name"]]["outputs"]
        }
        assert versions == before


def test_a_failed_run_ends_in_fail_events_with_the_error(failed_run: str, project: Project) -> None:
    events = _events(project, failed_run)
    for event in events:
        validate_event(event)
    kinds = [(e["job"]["name"], e["eventType"]) for e in events]
    assert kinds == [
        ("fragile", "START"),
        ("fragile.load", "START"),
        ("fragile.load", "COMPLETE"),
        ("fragile.explode", "START"),
        ("fragile.explode", "FAIL"),
        ("fragile", "FAIL"),
    ]
    error = events[4]["run"]["facets"]["errorMessage"]
    assert "boom: bad rows" in error["message"]
    assert error["programmingLanguage"] == "python"
    assert "ValueError" in error["stackTrace"]
    assert events[4]["outputs"] == []
    assert "boom" in events[-1]["run"]["facets"]["errorMessage"]["message"]


# -- PROV ------------------------------------------------------------------------------
def _relations(doc: ProvDocument) -> dict[str, set[tuple[str, ...]]]:
    found: dict[str, set[tuple[str, ...]]] = {}
    for record in doc.get_records():
        if record.is_relation():
            values = tuple(str(v) for _, v in record.formal_attributes)
            found.setdefault(type(record).__name__, set()).add(values)
    return found


def test_prov_document_reads_back_with_the_expected_records(
    run_people: Callable[..., str], project: Project
) -> None:
    run_id = run_people()
    content = render_export(export_run(project, run_id, "prov"), "prov")
    doc = ProvDocument.deserialize(content=content, format="json")
    summary = run_summary(project.reader(), run_id)
    steps = {s["node_id"]: s for s in summary["steps"]}
    records = {str(r.identifier): r for r in doc.get_records() if not r.is_relation()}

    run_act = records[f"pipetrail:run-{run_id}"]
    assert isinstance(run_act, ProvActivity)
    started = run_act.get_startTime()
    assert started is not None
    assert started.isoformat() == summary["started_at"].replace("Z", "+00:00")
    assert set(run_act.get_attribute("pipetrail:status")) == {"completed"}
    owner = f"pipetrail:owner-{summary['owner'].replace('@', '%40')}"
    assert set(map(str, records[owner].get_asserted_types())) == {"prov:Person"}
    engine = [
        r for r in records.values() if "prov:SoftwareAgent" in map(str, r.get_asserted_types())
    ]
    assert len(engine) == 1
    assert set(engine[0].get_attribute("pipetrail:version")) == {summary["pipetrail_version"]}

    source = entity_id(summary["sources"][0]["digest"])
    load, split = steps["load"], steps["split"]
    load_act = f"pipetrail:steprun-{load['step_run_id']}"
    split_act = f"pipetrail:steprun-{split['step_run_id']}"
    table = entity_id(load["outputs"]["output"])
    adults = entity_id(split["outputs"]["adults"])
    assert {source, table, adults, entity_id(summary["environment"])} <= set(records)

    rel = _relations(doc)
    pairs = {name: {v[:2] for v in values} for name, values in rel.items()}
    assert (load_act, source) in pairs["ProvUsage"]
    assert (table, load_act) in pairs["ProvGeneration"]
    assert (adults, table) in pairs["ProvDerivation"]
    assert (split_act, load_act) in pairs["ProvCommunication"]  # wasInformedBy
    assert (f"pipetrail:run-{run_id}", owner) in pairs["ProvAssociation"]
    assert (adults, owner) in pairs["ProvAttribution"]
    # wasStartedBy(activity, trigger, starter, time): each step run by the pipeline run.
    assert any(v[0] == load_act and v[2] == f"pipetrail:run-{run_id}" for v in rel["ProvStart"])
    plans = {v[2] for v in rel["ProvAssociation"] if v[0] == load_act}
    assert len(plans) == 1
    (plan,) = plans
    assert "prov:Plan" in map(str, records[plan].get_asserted_types())
    delegations = {v[:3] for v in rel["ProvDelegation"]}  # delegate, responsible, activity
    assert (str(engine[0].identifier), owner, f"pipetrail:run-{run_id}") in delegations


def test_prov_of_a_failed_run_generates_nothing_for_the_failed_step(
    failed_run: str, project: Project
) -> None:
    doc_json = export_run(project, failed_run, "prov")
    assert isinstance(doc_json, dict)
    doc = ProvDocument.deserialize(content=json.dumps(doc_json), format="json")
    summary = run_summary(project.reader(), failed_run)
    explode = next(s for s in summary["steps"] if s["node_id"] == "explode")
    act = f"pipetrail:steprun-{explode['step_run_id']}"
    (record,) = [r for r in doc.get_records() if str(r.identifier) == act]
    assert set(record.get_attribute("pipetrail:status")) == {"failed"}
    generators = {v[1] for v in _relations(doc)["ProvGeneration"]}
    assert act not in generators
    assert act in {v[0] for v in _relations(doc)["ProvUsage"]}


# -- in-toto -----------------------------------------------------------------------------
def test_intoto_statement_has_slsa_provenance(
    files: PipelineFiles,
    project: Project,
    project_root: Path,
    people_csv: Path,
    unique: Callable[[str], str],
) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], cwd=project_root, check=True)
    name = unique("people")
    definition = files.load(name, PEOPLE)
    subprocess.run([*git, "add", "."], cwd=project_root, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=project_root, check=True)
    options = RunOptions(source_file=str(project_root / f"{name}.py"))
    run_id = run_pipeline(definition, {"min_age": 30}, project, options).id
    statement = export_run(project, run_id, "intoto")
    assert isinstance(statement, dict)
    summary = run_summary(project.reader(), run_id)

    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    subjects = {s["name"]: s["digest"] for s in statement["subject"]}
    expected = {
        f"people.{s['node_id']}.{name}": {"blake3": digest.removeprefix("blake3:")}
        for s in summary["steps"]
        for name, digest in s["outputs"].items()
    }
    assert subjects == expected
    assert all(HEX64.match(d["blake3"]) for d in subjects.values())

    predicate = statement["predicate"]
    build = predicate["buildDefinition"]
    assert build["buildType"].startswith("pipetrail://")
    assert build["externalParameters"] == {"pipeline": "people", "params": {"min_age": 30}}
    deps = build["resolvedDependencies"]
    for dep in deps:
        assert dep.get("uri") or dep.get("digest")
        for algorithm, value in dep["digest"].items():
            assert re.fullmatch(r"[0-9a-f]{40}" if algorithm == "gitCommit" else HEX64, value)
    by_role: dict[str, list[dict[str, Any]]] = {}
    for dep in deps:
        by_role.setdefault(dep["annotations"]["role"], []).append(dep)
    (source,) = by_role["source"]
    assert source["uri"] == f"file://{summary['host']}{people_csv.resolve().as_posix()}"
    assert source["digest"]["blake3"] == summary["sources"][0]["digest"].removeprefix("blake3:")
    commits = [d for d in by_role["code"] if "gitCommit" in d["digest"]]
    assert [c["digest"]["gitCommit"] for c in commits] == [summary["git"]["commit"]]
    assert commits[0]["uri"].startswith("git+file://")
    assert {d["name"] for d in by_role["code"] if "blake3" in d["digest"]} == {
        "load",
        "split",
        "summarize",
    }
    (environment,) = by_role["environment"]
    assert environment["digest"]["blake3"] == summary["environment"].removeprefix("blake3:")

    # With git, OpenLineage jobs also say where their code lives (validated like the rest).
    for event in _events(project, run_id):
        validate_event(event)
        location = event["job"]["facets"]["sourceCodeLocation"]
        assert location["version"] == summary["git"]["commit"]
        assert location["url"].startswith("file:///")

    details = predicate["runDetails"]
    assert details["builder"]["id"].startswith("pipetrail://")
    assert details["metadata"] == {
        "invocationId": run_id,
        "startedOn": summary["started_at"],
        "finishedOn": summary["ended_at"],
    }


def test_intoto_refuses_a_failed_run(failed_run: str, project: Project) -> None:
    with pytest.raises(ExportError, match=rf"run {failed_run} failed; in-toto provenance"):
        export_run(project, failed_run, "intoto")


# -- runs still running ----------------------------------------------------------------
@pytest.fixture
def running_run(project: Project) -> str:
    """A run whose process (this one) is alive and which has not ended."""
    run_id = new_id()
    payload = {
        "run_id": run_id,
        "pipeline": "slow",
        "pipeline_fingerprint": "blake3:" + "0" * 64,
        "owner": current_owner(),
        "host": current_host(),
        "process": process_identity(os.getpid()),
        "params": {},
        "seed": 0,
        "started_at": format_ts(utcnow()),
    }
    project.ledger.append([EventDraft(EventKind.RUN_STARTED, payload, run_id=run_id)])
    return run_id


@pytest.mark.parametrize("format_name", ["openlineage", "prov", "intoto"])
def test_a_running_run_is_not_exported(
    running_run: str, project: Project, format_name: str
) -> None:
    with pytest.raises(RunNotFinishedError, match=rf"run {running_run} .* is still running"):
        export_run(project, running_run, format_name)


# -- CLI ----------------------------------------------------------------------------------
def _cli(args: list[str]) -> Any:
    group = _Group(name="pipetrail", commands={"export": export})
    return CliRunner().invoke(group, ["export", *args])


@pytest.fixture
def in_project(project_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(project_root)
    return project_root


def test_cli_prints_openlineage_json_lines(
    run_people: Callable[..., str], project: Project, in_project: Path
) -> None:
    run_id = run_people()
    result = _cli([run_id[:10], "--format", "openlineage"])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events == export_run(project, run_id, "openlineage")


def test_cli_writes_each_format_to_a_file(
    run_people: Callable[..., str], project: Project, in_project: Path
) -> None:
    run_id = run_people()
    for format_name in ("openlineage", "prov", "intoto"):
        target = in_project / "out" / f"export.{format_name}"
        result = _cli(["latest", "--format", format_name, "-o", str(target)])
        assert result.exit_code == 0, result.output
        assert result.stdout == ""
        expected = render_export(export_run(project, run_id, format_name), format_name)
        assert target.read_text() == expected


def test_cli_refuses_a_running_run_and_writes_no_file(running_run: str, in_project: Path) -> None:
    target = in_project / "events.jsonl"
    result = _cli([running_run, "--format", "openlineage", "-o", str(target)])
    assert result.exit_code == 2
    assert "is still running" in result.stderr
    assert not target.exists()
    assert [p.name for p in in_project.iterdir() if p.name.startswith(".events")] == []


def test_cli_reports_an_unknown_run(in_project: Path) -> None:
    result = _cli(["nope", "--format", "prov"])
    assert result.exit_code == 2
    assert "no run matches 'nope'" in result.stderr


# -- sending to a collector --------------------------------------------------------------
class _Receiver:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 201
        self.failures: list[int] = []  # statuses answered first, one per request

    def answer(self) -> int:
        return self.failures.pop(0) if self.failures else self.status


@pytest.fixture
def collector() -> Iterator[tuple[str, _Receiver]]:
    receiver = _Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receiver.requests.append((self.path, dict(self.headers), body))
            status = receiver.answer()
            self.send_response(status)
            self.end_headers()
            if status >= 400:
                self.wfile.write(b"invalid event")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", receiver
    server.shutdown()
    server.server_close()
    thread.join()


def test_send_posts_every_event_to_the_lineage_endpoint(
    run_people: Callable[..., str], project: Project, collector: tuple[str, _Receiver]
) -> None:
    url, receiver = collector
    run_id = run_people()
    sent = send_openlineage(project, run_id, url + "/", api_key="s3cret")
    events = _events(project, run_id)
    assert sent == len(events) == len(receiver.requests)
    assert [json.loads(body) for _, _, body in receiver.requests] == events
    for path, headers, _ in receiver.requests:
        assert path == "/api/v1/lineage"
        assert headers["Content-Type"] == "application/json"
        assert headers["Authorization"] == "Bearer s3cret"


def test_cli_send(
    run_people: Callable[..., str], collector: tuple[str, _Receiver], in_project: Path
) -> None:
    url, receiver = collector
    run_people()
    result = _cli(["latest", "--format", "openlineage", "--send", url])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"sent {len(receiver.requests)} OpenLineage events to {url}/api/v1/lineage" in (
        result.stderr
    )
    assert "Authorization" not in receiver.requests[0][1]


def test_a_collector_error_names_the_url_and_the_status(
    run_people: Callable[..., str], collector: tuple[str, _Receiver], in_project: Path
) -> None:
    url, receiver = collector
    receiver.status = 500
    run_people()
    # A short backoff between the tries: the default's 1.8 s of waiting proves nothing here.
    result = _cli(["latest", "--format", "openlineage", "--send", url, "--retry-backoff", "0.01"])
    assert result.exit_code == 2
    assert f"collector at {url}/api/v1/lineage refused the START event" in result.stderr
    assert "HTTP 500" in result.stderr
    assert "invalid event" in result.stderr
    assert "(sent 4 times)" in result.stderr  # tried again 3 times (--retries)
    # Stops at the first refusal: every request carried the first event.
    assert len({body for _, _, body in receiver.requests}) == 1
    assert len(receiver.requests) == 4


def test_a_collector_failing_twice_then_taking_the_event_gets_it(
    run_people: Callable[..., str], project: Project, collector: tuple[str, _Receiver]
) -> None:
    url, receiver = collector
    receiver.failures = [503, 502]
    run_id = run_people()
    sent = send_openlineage(project, run_id, url, backoff=0.01)
    events = _events(project, run_id)
    assert sent == len(events)
    bodies = [json.loads(body) for _, _, body in receiver.requests]
    assert bodies == [events[0], events[0], *events]


def test_without_retries_the_first_failure_is_final(
    run_people: Callable[..., str], collector: tuple[str, _Receiver], in_project: Path
) -> None:
    url, receiver = collector
    receiver.failures = [503]
    run_people()
    result = _cli(["latest", "--format", "openlineage", "--send", url, "--retries", "0"])
    assert result.exit_code == 2
    assert "HTTP 503 Service Unavailable: invalid event" in result.stderr
    assert len(receiver.requests) == 1


def test_send_with_headers_and_gzip(
    run_people: Callable[..., str], project: Project, collector: tuple[str, _Receiver]
) -> None:
    url, receiver = collector
    run_id = run_people()
    send_openlineage(project, run_id, url, headers={"X-Team": "ml"}, gzip=True)
    _, headers, body = receiver.requests[0]
    assert (headers["X-Team"], headers["Content-Encoding"]) == ("ml", "gzip")
    assert json.loads(gzip.decompress(body)) == _events(project, run_id)[0]
    assert headers["User-Agent"].startswith("pipetrail/")
    result = _cli(["latest", "--format", "openlineage", "--send", url, "--header", "X-Team"])
    assert result.exit_code == 2
    assert "expected 'NAME: VALUE'" in result.output


def test_send_without_the_openlineage_client_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "openlineage.client.transport.http", None)
    with pytest.raises(CollectorError) as caught:
        OpenLineageHttpEmitter("http://127.0.0.1:9")
    assert str(caught.value) == (
        "sending OpenLineage events needs the openlineage-python package: "
        "pip install 'pipetrail[openlineage]'"
    )


def test_an_unreachable_collector_names_the_url(
    run_people: Callable[..., str], in_project: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run_people()
    address = f"http://127.0.0.1:{port}"
    quick = ["--retry-backoff", "0.01"]
    result = _cli(["latest", "--format", "openlineage", "--send", address, *quick])
    assert result.exit_code == 2
    assert f"OpenLineage collector at {address}/api/v1/lineage" in result.stderr
    assert "check the URL" in result.stderr


def test_send_needs_openlineage_and_an_http_url(in_project: Path) -> None:
    result = _cli(["latest", "--format", "prov", "--send", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert "--send works with --format openlineage only" in result.output
    with pytest.raises(CollectorError, match="must look like http://host:port"):
        OpenLineageHttpEmitter("ftp://example.org")


# -- metadata backends -------------------------------------------------------------------
@pytest.mark.postgres
def test_exports_on_each_backend(
    metadata_url: str,
    files: PipelineFiles,
    project_root: Path,
    people_csv: Path,
    unique: Callable[[str], str],
) -> None:
    (project_root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "{metadata_url}"\n')
    project = Project.at(project_root)
    try:
        definition = files.load(unique("people"), PEOPLE)
        run_id = run_pipeline(definition, {}, project, RunOptions()).id
        events = _events(project, run_id)
        for event in events:
            validate_event(event)
        assert len(events) == 8
        doc = export_run(project, run_id, "prov")
        assert isinstance(doc, dict)
        ProvDocument.deserialize(content=json.dumps(doc), format="json")
        statement = export_run(project, run_id, "intoto")
        assert isinstance(statement, dict)
        deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        assert {d["name"] for d in deps if d["annotations"]["role"] == "code"} == {
            "load",
            "split",
            "summarize",
        }
    finally:
        project.close()


def test_exports_carry_the_run_name_tags_and_purpose(
    files: PipelineFiles, project: Project, people_csv: Path, unique: Callable[[str], str]
) -> None:
    definition = files.load(unique("people"), PEOPLE)
    options = RunOptions(name="nightly", tags={"stage": "prod", "team": "risk"})
    run_id = run_pipeline(definition, {}, project, options).id
    events = export_run(project, run_id, "openlineage")
    assert isinstance(events, list)
    for event in events:
        validate_event(event)
    facet = events[0]["run"]["facets"]["pipetrail_run"]
    assert (facet["name"], facet["purpose"]) == ("nightly", "run")
    assert facet["tags"] == {"stage": "prod", "team": "risk"}
    doc = export_run(project, run_id, "prov")
    assert isinstance(doc, dict)
    activity = doc["activity"][f"pipetrail:run-{run_id}"]
    assert activity["pipetrail:name"] == "nightly"
    assert json.loads(activity["pipetrail:tags"]) == {"stage": "prod", "team": "risk"}
