"""Cache keys through real runs: no stale hit from an object a step reads, no needless miss.

Each test writes a pipeline module into a temporary project, runs it with the real runner
(SQLite ledger, local store), edits it, and runs it again.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from pipetrail.execution.runner import RunOptions, run_pipeline
from tests.integration.conftest import PipelineFiles, statuses

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pipetrail.execution.project import Project

pytestmark = pytest.mark.integration


def _run(definition, project: Project, **params):  # type: ignore[no-untyped-def]
    return run_pipeline(definition, params, project, RunOptions())


SCHEMA_IN_BODY = """
import pandas as pd
import pandera.pandas as pa
from pipetrail import pipeline, step

SCHEMA = pa.DataFrameSchema({"a": pa.Column(DTYPE, coerce=True)})

@step
def make(n: int) -> pd.DataFrame:
    return pd.DataFrame({"a": [1.0 * i for i in range(n)]})

@step
def validated(df: pd.DataFrame) -> pd.DataFrame:
    return SCHEMA(df)

@pipeline
def p(n: int = 3):
    return validated(make(n))
"""


def test_changing_a_schema_the_step_body_uses_reruns_the_step(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    # The schema is callable: it used to be covered by pandera's version only, and the
    # second run served the float output after the schema said int.
    name = unique("schema")
    first = _run(files.load(name, SCHEMA_IN_BODY.replace("DTYPE", "float")), project)
    assert str(first.outputs["a"].dtype) == "float64"
    second = _run(files.load(name, SCHEMA_IN_BODY.replace("DTYPE", "int")), project)
    assert statuses(second) == {"make": "cached", "validated": "completed"}
    assert str(second.outputs["a"].dtype) == "int64"
    third = _run(files.load(name, SCHEMA_IN_BODY.replace("DTYPE", "int")), project)
    assert statuses(third) == {"make": "cached", "validated": "cached"}


_FRESH_PROCESS = """
import json, sys
from pathlib import Path

from pipetrail.execution.loader import load_pipeline
from pipetrail.execution.project import Project
from pipetrail.execution.runner import RunOptions, run_pipeline

project = Project.at(Path(sys.argv[1]))
try:
    definition, _ = load_pipeline(sys.argv[2])
    run = run_pipeline(definition, {}, project, RunOptions())
    print(json.dumps({s["node_id"]: s["status"] for s in run.steps()}))
finally:
    project.close()
"""


def test_a_schema_the_step_body_uses_is_fingerprinted_in_a_fresh_process(
    files: PipelineFiles, project_root: Path
) -> None:
    # The schema's fingerprint is registered by the contracts' fingerprinting, which a
    # run of steps without declared contracts did not import: every run of the step was
    # a miss ("no fingerprint is registered"), unless something else had imported it.
    path = files.write("schema_fresh", SCHEMA_IN_BODY.replace("DTYPE", "int"))

    def child() -> dict[str, str]:
        done = subprocess.run(
            [sys.executable, "-c", _FRESH_PROCESS, str(project_root), str(path)],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
            cwd=project_root,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]

    assert child() == {"make": "completed", "validated": "completed"}
    assert child() == {"make": "cached", "validated": "cached"}


CONTRACT_IN_DECORATOR = """
import pandas as pd
import pandera.pandas as pa
from pipetrail import Contract, pipeline, step

RAW = Contract(pa.DataFrameSchema({"a": pa.Column(float, pa.Check.ge(MIN))}), rows=(1, None))

@step(contracts={"output": RAW})
def ingest(n: int) -> pd.DataFrame:
    return pd.DataFrame({"a": [1.0 * i for i in range(n)]})

@pipeline
def p(n: int = 3):
    return ingest(n)
"""


def test_a_contract_named_in_the_decorator_is_cached(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    # It used to force a miss on every run ("cannot fingerprint global ... of type Contract").
    name = unique("contract")
    definition = files.load(name, CONTRACT_IN_DECORATOR.replace("MIN", "0"))
    assert statuses(_run(definition, project)) == {"ingest": "completed"}
    second = _run(definition, project)
    assert second.step("ingest")["cache_decision"] == "hit"
    changed = files.load(name, CONTRACT_IN_DECORATOR.replace("MIN", "-1"))
    assert statuses(_run(changed, project)) == {"ingest": "completed"}


POLARS = """
import polars as pl
from polars import col
from pipetrail import pipeline, step

@step
def make(n: int) -> pl.DataFrame:
    return pl.DataFrame({"a": list(range(n))})

@step
def doubled(df: pl.DataFrame) -> pl.DataFrame:
    return df.with_columns((pl.col("a") * 2).alias("b"), col("a").alias("c"))

@pipeline
def p(n: int = 3):
    return doubled(make(n))
"""


def test_a_step_using_polars_col_is_cached(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    # pl.col answers every attribute: it used to confuse the walker into a forced miss.
    definition = files.load(unique("polars"), POLARS)
    _run(definition, project)
    second = _run(definition, project)
    assert statuses(second) == {"make": "cached", "doubled": "cached"}


BROKEN_IMPORT = """
from pipetrail import pipeline, step

@step
def use(n: int) -> int:
    try:
        import HELPER
    except ImportError:
        return n
    return HELPER.scale(n)

@pipeline
def p(n: int = 3):
    return use(n)
"""


def test_a_project_module_that_fails_to_import_forces_a_miss_naming_it(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    # It used to be dropped from the key silently: the step stayed cached on its fallback
    # path, and kept serving that result after the module was fixed.
    helper, missing = unique("helper"), unique("missing")
    files.write(helper, f"import {missing}\n\n\ndef scale(n):\n    return 10 * n\n")
    definition = files.load(unique("pipe"), BROKEN_IMPORT.replace("HELPER", helper))
    for _ in range(2):
        run = _run(definition, project)
        step = run.step("use")
        assert step["cache_decision"] == "forced-miss"
        assert step["cache_reason"].startswith(
            f"cannot fingerprint project module {helper!r} imported by 'use' failed to import "
            f"(ModuleNotFoundError: No module named {missing!r})"
        )
        assert run.outputs == 3
    files.write(helper, "def scale(n):\n    return 10 * n\n")
    run = _run(definition, project)
    assert run.step("use")["cache_decision"] == "miss"
    assert run.outputs == 30


UNKNOWN_OBJECT = """
import operator
from pipetrail import pipeline, step

UPPER = operator.methodcaller("upper")

@step
def use(text: str) -> str:
    return UPPER(text)

@pipeline
def p(text: str = "a"):
    return use(text)
"""


def test_an_object_with_no_fingerprint_forces_a_miss_that_names_it(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    definition = files.load(unique("unknown"), UNKNOWN_OBJECT)
    for _ in range(2):
        step = _run(definition, project).step("use")
        assert step["status"] == "completed"
        assert step["cache_decision"] == "forced-miss"
        assert step["cache_reason"] == (
            "cannot fingerprint global 'use:UPPER' (methodcaller): no fingerprint is "
            "registered for operator.methodcaller; register one with "
            "pipetrail.register_fingerprint(methodcaller, fn) (see docs/caching.md)"
        )


REGISTERED = """
import pipetrail
from pipetrail import pipeline, step


class Vocabulary:
    def __init__(self, words):
        self._words = list(words)

    def index(self, word):
        return self._words.index(word)


pipetrail.register_fingerprint(Vocabulary, lambda v: {"words": v._words})
VOCAB = Vocabulary(WORDS)

@step
def encode(word: str) -> int:
    return VOCAB.index(word)

@pipeline
def p(word: str = "b"):
    return encode(word)
"""


def test_a_registered_fingerprint_caches_and_tracks_the_objects_state(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    name = unique("registered")
    definition = files.load(name, REGISTERED.replace("WORDS", '["a", "b"]'))
    assert _run(definition, project).outputs == 1
    assert statuses(_run(definition, project)) == {"encode": "cached"}
    changed = _run(files.load(name, REGISTERED.replace("WORDS", '["b", "a"]')), project)
    assert statuses(changed) == {"encode": "completed"}
    assert changed.outputs == 0


ESTIMATOR = """
import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from pipetrail import pipeline, step

MODEL = LogisticRegression(C=STRENGTH)

@step
def fit(n: int) -> list[float]:
    x = np.arange(n, dtype=float).reshape(-1, 1)
    y = (x[:, 0] > n / 2).astype(int)
    return clone(MODEL).fit(x, y).coef_.ravel().tolist()

@pipeline
def p(n: int = 10):
    return fit(n)
"""


def test_a_module_level_estimator_is_keyed_by_its_params(
    files: PipelineFiles, project: Project, unique: Callable[[str], str]
) -> None:
    # An estimator used to force a miss on every run; now its parameters (and fitted
    # state: the step fits a clone, so the global stays unfitted) are its key.
    name = unique("estimator")
    definition = files.load(name, ESTIMATOR.replace("STRENGTH", "1.0"))
    first = _run(definition, project)
    assert statuses(_run(definition, project)) == {"fit": "cached"}
    changed = _run(files.load(name, ESTIMATOR.replace("STRENGTH", "0.01")), project)
    assert statuses(changed) == {"fit": "completed"}
    assert changed.outputs != first.outputs


_SUMMARY = re.compile(r"completed: (\d+) executed, (\d+) cached of (\d+) steps")


def test_the_example_is_fully_cached_on_its_second_run(
    example_two_runs: tuple[Path, list[subprocess.CompletedProcess[str]]],
) -> None:
    # ingest names a module-level Contract in its decorator: it used to re-run every time.
    counts = []
    for result in example_two_runs[1]:
        assert result.returncode == 0, result.stderr
        found = _SUMMARY.search(result.stdout + result.stderr)
        assert found is not None, result.stdout
        counts.append(tuple(int(group) for group in found.groups()))
    assert counts == [(6, 0, 6), (0, 6, 6)]
