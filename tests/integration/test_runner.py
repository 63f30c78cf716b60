"""Running real pipelines: records, caching honesty, failures, seeds (SQLite project)."""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import DefinitionError, ParamError, StepFailedError
from pipetrail.execution.runner import RunOptions, run_pipeline
from tests.integration.conftest import PipelineFiles, statuses

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pipetrail.execution.project import Project

pytestmark = pytest.mark.integration

CHAIN = """
from pipetrail import pipeline, step

@step
def make(n: int) -> list[int]:
    return list(range(n))

@step
def double(xs: list[int]) -> list[int]:
    return [2 * x for x in xs]

@step
def total(xs: list[int], offset: int = 0) -> int:
    return sum(xs) + offset

@pipeline
def chain(n: int = 5, offset: int = 0):
    return total(double(make(n)), offset=offset)
"""


def _run(definition, project: Project, **params):  # type: ignore[no-untyped-def]
    return run_pipeline(definition, params, project, RunOptions())


def test_first_run_executes_second_run_reuses_everything(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    chain = files.load(unique("chain"), CHAIN)
    first = _run(chain, project)
    assert first.outputs == 20
    assert set(statuses(first).values()) == {"completed"}
    second = _run(chain, project)
    assert second.outputs == 20
    assert set(statuses(second).values()) == {"cached"}
    executed = {s["node_id"]: s["step_run_id"] for s in first.steps()}
    for s in second.steps():
        assert s["cache_decision"] == "hit"
        assert s["reused_step_run_id"] == executed[s["node_id"]]
        assert (
            s["outputs"]
            == next(x for x in first.steps() if x["node_id"] == s["node_id"])["outputs"]
        )


def test_changing_a_param_reruns_only_downstream(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    chain = files.load(unique("chain"), CHAIN)
    _run(chain, project)
    run = _run(chain, project, offset=3)
    assert run.outputs == 23
    assert statuses(run) == {"make": "cached", "double": "cached", "total": "completed"}


def test_comment_and_docstring_changes_keep_the_cache(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    name = unique("chain")
    _run(files.load(name, CHAIN), project)
    edited = CHAIN.replace(
        "def double(xs: list[int]) -> list[int]:\n    return",
        'def double(xs: list[int]) -> list[int]:\n    """Twice."""\n    # a comment\n    return',
    )
    assert edited != CHAIN
    run = _run(files.load(name, edited), project)
    assert set(statuses(run).values()) == {"cached"}


def test_changing_a_step_body_reruns_it_and_downstream(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    name = unique("chain")
    _run(files.load(name, CHAIN), project)
    run = _run(files.load(name, CHAIN.replace("2 * x", "3 * x")), project)
    assert run.outputs == 30
    assert statuses(run) == {"make": "cached", "double": "completed", "total": "completed"}


def test_changing_a_local_helper_module_invalidates_the_step_using_it(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    helper = unique("helpers")
    files.write(helper, "def scale(x):\n    return 2 * x\n\ndef unrelated():\n    return 1\n")
    source = f"""
import {helper}
from pipetrail import pipeline, step

@step
def make(n: int) -> list[int]:
    return list(range(n))

@step
def scaled(xs: list[int]) -> list[int]:
    return [{helper}.scale(x) for x in xs]

@pipeline
def p(n: int = 4):
    return scaled(make(n))
"""
    name = unique("pipe")
    assert _run(files.load(name, source), project).outputs == [0, 2, 4, 6]
    # An unrelated function in the helper module changes: still cached.
    files.write(helper, "def scale(x):\n    return 2 * x\n\ndef unrelated():\n    return 2\n")
    run = _run(files.load(name), project)
    assert statuses(run) == {"make": "cached", "scaled": "cached"}
    # The helper the step calls changes: the step runs again.
    files.write(helper, "def scale(x):\n    return 10 * x\n\ndef unrelated():\n    return 2\n")
    run = _run(files.load(name), project)
    assert statuses(run) == {"make": "cached", "scaled": "completed"}
    assert run.outputs == [0, 10, 20, 30]


def test_version_bump_and_cache_false_and_no_cache(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    name = unique("chain")
    chain = files.load(name, CHAIN)
    _run(chain, project)
    bumped = files.load(name, CHAIN.replace("@step\ndef double", '@step(version="2")\ndef double'))
    assert statuses(_run(bumped, project))["double"] == "completed"
    uncached = files.load(name, CHAIN.replace("@step\ndef make", "@step(cache=False)\ndef make"))
    run = _run(uncached, project)
    make = run.step("make")
    assert make["status"] == "completed"
    assert make["cache_decision"] == "disabled"
    assert "cache=False" in make["cache_reason"]
    run = run_pipeline(chain, {}, project, RunOptions(cache=False))
    assert {s["cache_decision"] for s in run.steps()} == {"disabled"}


def test_unfingerprintable_param_forces_a_miss_and_says_so(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    source = """
import threading
from pipetrail import pipeline, step

@step
def use(lock: object) -> int:
    return 1

@pipeline
def p():
    return use(threading.Lock())
"""
    definition = files.load(unique("pipe"), source)
    for _ in range(2):
        step = _run(definition, project).step("use")
        assert step["status"] == "completed"
        assert step["cache_decision"] == "forced-miss"
        assert "lock" in step["cache_reason"]


def test_failed_step_records_error_and_no_outputs(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    source = """
from pipetrail import pipeline, step

@step
def first() -> int:
    return 1

@step
def boom(x: int) -> int:
    print("about to fail")
    raise ValueError("bad value 42")

@step
def after(x: int) -> int:
    return x

@pipeline
def p():
    return after(boom(first()))
"""
    definition = files.load(unique("pipe"), source)
    with pytest.raises(StepFailedError, match="bad value 42") as info:
        _run(definition, project)
    reader = project.reader()
    run = reader.get_run(info.value.run_id)
    assert run["status"] == "failed"
    steps = {s["node_id"]: s for s in reader.step_runs(info.value.run_id)}
    assert set(steps) == {"first", "boom"}  # `after` never started
    boom = steps["boom"]
    assert boom["status"] == "failed"
    assert "ValueError: bad value 42" in boom["error"]
    assert "raise ValueError" in boom["traceback"]
    assert boom["outputs"] is None
    logs = project.store.get_bytes(boom["logs"]).decode()
    assert "about to fail" in logs
    assert project.ledger.verify().ok


def test_bad_params_and_missing_sources_record_nothing(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    chain = files.load(unique("chain"), CHAIN)
    with pytest.raises(ParamError, match="has no parameter 'nope'"):
        run_pipeline(chain, {"nope": "1"}, project, RunOptions())
    with pytest.raises(ParamError, match="'n' expects int"):
        run_pipeline(chain, {"n": "abc"}, project, RunOptions())
    source = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def read(path: Path) -> str:
    return path.read_text()

@pipeline
def p():
    return read(source("data/missing.csv"))
"""
    with pytest.raises(DefinitionError, match=r"'data/missing\.csv'.*does not exist"):
        _run(files.load(unique("pipe"), source), project)
    assert project.reader().event_count() == 0


def test_unsupported_output_type_fails_the_step_clearly(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    source = """
import threading
from pipetrail import pipeline, step

@step
def make_lock() -> object:
    return threading.Lock()

@pipeline
def p():
    return make_lock()
"""
    with pytest.raises(StepFailedError, match="make_lock") as info:
        _run(files.load(unique("pipe"), source), project)
    step = project.reader().find_step_run(info.value.run_id, "make_lock")
    assert "lock" in step["error"].lower()
    assert "allow_pickle" in step["error"] or "register" in step["error"]
    assert project.reader().artifact_blobs()  # environment etc. exist ...
    assert step["outputs"] is None  # ... but no output of the failed step


def test_fan_out_multi_output_and_nested_pipelines(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    source = """
from pipetrail import pipeline, step

@step(outputs=("evens", "odds"))
def split(n: int) -> tuple[list[int], list[int]]:
    xs = list(range(n))
    return [x for x in xs if x % 2 == 0], [x for x in xs if x % 2]

@step
def scale(xs: list[int], k: int) -> list[int]:
    return [k * x for x in xs]

@step
def combine(parts: list[list[int]]) -> int:
    return sum(sum(p) for p in parts)

@pipeline
def inner(n: int = 4):
    evens, odds = split(n)
    return combine([scale(evens, k=k) for k in (1, 10)])

@pipeline
def outer(n: int = 4):
    a = inner(n)
    b = inner(n + 2)
    return [a, b]
"""
    definition = files.load(unique("pipe"), source, target="outer")
    run = _run(definition, project)
    # inner(4): evens [0, 2] -> scaled by 1 and 10 -> 2 + 20; inner(6): [0, 2, 4] -> 6 + 60
    assert run.outputs == [22, 66]
    ids = set(statuses(run))
    assert {"inner/split", "inner/scale", "inner/scale[1]", "inner/combine"} <= ids
    assert {"inner[1]/split", "inner[1]/scale[1]"} <= ids
    split = run.step("inner/split")
    assert set(split["outputs"]) == {"evens", "odds"}


def test_run_record_is_complete(
    files: PipelineFiles, project: Project, project_root: Path, unique: Callable[[str], str]
) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], cwd=project_root, check=True)
    name = unique("chain")
    files.write(name, CHAIN)
    subprocess.run([*git, "add", "."], cwd=project_root, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=project_root, check=True)
    (project_root / f"{name}.py").write_text(CHAIN + "\n# uncommitted edit\n")
    run = _run(files.load(name), project, n=3)
    record = project.reader().get_run(run.id)
    assert record["params"] == {"n": 3, "offset": 0}
    assert record["seed"] == 0
    assert record["owner"]
    assert record["started_at"].endswith("Z")
    assert record["pipeline_fingerprint"].startswith("blake3:")
    git_record = record["git"]
    assert len(git_record["commit"]) == 40
    assert git_record["dirty"] is True
    diff = project.store.get_bytes(git_record["diff_digest"]).decode()
    assert "uncommitted edit" in diff
    env_artifact = project.reader().artifact(record["environment"])
    assert env_artifact is not None
    env = json.loads(project.store.get_bytes(env_artifact["blob"]))
    names = {d["name"] for d in env["distributions"]}
    assert {"blake3", "sqlalchemy"} <= {n.lower() for n in names}
    assert env["python"]["version"].startswith("3.")
    for step in run.steps():
        assert step["code_digest"].startswith("blake3:")
        assert step["resources"]["wall_ns"] > 0
        assert step["resources"]["cpu_ns"] >= 0
        assert step["ended_at"] >= step["started_at"]
        assert step["components"]["inputs"] or step["components"]["params"]


def test_seeds_are_derived_per_step_and_applied(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    source = """
import random
from pipetrail import pipeline, step

@step
def draw(tag: str) -> float:
    return random.random()

@pipeline
def p():
    return [draw("a"), draw("b")]
"""
    definition = files.load(unique("pipe"), source)
    a1, b1 = run_pipeline(definition, {}, project, RunOptions(seed=1, cache=False)).outputs
    a2, b2 = run_pipeline(definition, {}, project, RunOptions(seed=1, cache=False)).outputs
    a3, _ = run_pipeline(definition, {}, project, RunOptions(seed=2, cache=False)).outputs
    assert (a1, b1) == (a2, b2)
    assert a1 != b1
    assert a1 != a3


def test_sources_are_snapshotted_and_changes_invalidate(
    files: PipelineFiles, project: Project, project_root: Path, unique: Callable[[str], str]
) -> None:
    (project_root / "data").mkdir()
    raw = project_root / "data" / "in.txt"
    raw.write_text("hello")
    source = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def read(path: Path) -> str:
    return path.read_text()

@step
def shout(text: str) -> str:
    return text.upper()

@pipeline
def p():
    return shout(read(source("data/in.txt")))
"""
    definition = files.load(unique("pipe"), source)
    first = _run(definition, project)
    assert first.outputs == "HELLO"
    observed = project.reader().sources(first.id)
    assert observed[0]["path"] == "data/in.txt"
    assert project.store.get_bytes(observed[0]["digest"]) == b"hello"
    raw.write_text("bye")
    second = _run(definition, project)
    assert second.outputs == "BYE"
    assert set(statuses(second).values()) == {"completed"}


SHOUT = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def read(path: Path) -> str:
    return path.read_text()

@step
def shout(text: str) -> str:
    return text.upper()

@pipeline
def p():
    return shout(read(source("data/in.txt")))
"""


def test_rehash_sees_a_change_the_stat_cache_cannot(
    files: PipelineFiles, project: Project, project_root: Path, unique: Callable[[str], str]
) -> None:
    import os
    import time

    from pipetrail.capture.statcache import StatCache, signature
    from pipetrail.hashing import digest_file

    raw = project_root / "data" / "in.txt"
    raw.parent.mkdir(parents=True, exist_ok=True)
    raw.write_text("hello")
    definition = files.load(unique("pipe"), SHOUT)
    first = _run(definition, project)
    old_digest = project.reader().sources(first.id)[0]["digest"]
    # Same size, mtime restored, and the cache entry re-signed as a file system whose
    # ctime does not move would leave it: nothing in the stat shows the change.
    before = raw.stat()
    raw.write_text("jello")
    os.utime(raw, ns=(before.st_atime_ns, before.st_mtime_ns))
    entry = (os.path.realpath(raw), signature(raw.stat()), old_digest, time.time_ns() - 10**11)
    with StatCache(project.config.state_dir / "cache" / "stat.db") as cache:
        assert cache.update([entry], cached_ns=time.time_ns())
    stale = _run(definition, project)
    assert project.reader().sources(stale.id)[0]["digest"] == old_digest
    assert set(statuses(stale).values()) == {"cached"}
    fresh = run_pipeline(definition, {}, project, RunOptions(rehash=True))
    assert project.reader().sources(fresh.id)[0]["digest"] == digest_file(raw)[0]
    assert fresh.outputs == "JELLO"
    assert statuses(fresh) == {"read": "completed", "shout": "completed"}


def test_python_api_runs_in_the_project_of_the_working_directory(
    files: PipelineFiles,
    project_root: Path,
    unique: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pipetrail import Pipeline

    chain = files.load(unique("chain"), CHAIN)
    assert isinstance(chain, Pipeline)
    monkeypatch.chdir(project_root)
    run = chain.run(n=4, offset=1)
    assert run.outputs == 13
    assert run.output_of("double") == [0, 2, 4, 6]
    again = chain.with_options(seed=0).run(n=4, offset=1)
    assert {s["status"] for s in again.steps()} == {"cached"}
    assert (project_root / ".pipetrail" / "ledger.db").exists()
    with pytest.raises(ParamError):
        chain.run(n="many")


FOLDER = """
from pathlib import Path
from pipetrail import pipeline, source, step

@step
def count_lines(folder: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in sorted(folder.glob("*.txt"))}

@pipeline
def p():
    return count_lines(source("data/texts"))
"""


def test_folder_sources_are_observed_by_manifest(
    files: PipelineFiles, project: Project, project_root: Path, unique: Callable[[str], str]
) -> None:
    texts = project_root / "data" / "texts"
    texts.mkdir(parents=True)
    (texts / "a.txt").write_text("1\n2\n")
    (texts / "b.txt").write_text("1\n")
    definition = files.load(unique("pipe"), FOLDER)
    first = _run(definition, project)
    assert first.outputs == {"a.txt": 2, "b.txt": 1}
    observed = project.reader().sources(first.id)[0]
    manifest = json.loads(project.store.get_bytes(observed["digest"]))
    assert set(manifest["files"]) == {"a.txt", "b.txt"}
    for entry in manifest["files"].values():
        assert project.store.exists(entry["digest"])  # content copied into the store
    assert set(statuses(_run(definition, project)).values()) == {"cached"}
    (texts / "c.txt").write_text("x\n")
    third = _run(definition, project)
    assert third.outputs == {"a.txt": 2, "b.txt": 1, "c.txt": 1}
    assert project.reader().sources(third.id)[0]["digest"] != observed["digest"]


def test_sources_escaping_the_project_or_holding_its_state_are_refused(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    escaping = FOLDER.replace('source("data/texts")', 'source("../outside")')
    with pytest.raises(DefinitionError, match="allow_outside"):
        _run(files.load(unique("pipe"), escaping), project)
    whole = FOLDER.replace('source("data/texts")', 'source(".")')
    with pytest.raises(DefinitionError, match="state folder"):
        _run(files.load(unique("pipe"), whole), project)
    assert project.reader().event_count() == 0
