"""Package names are imported on first use: importing one module does not import them all."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
import types
from typing import TYPE_CHECKING

import pytest

import pipetrail
from pipetrail.core.lazy import lazy_exports

if TYPE_CHECKING:
    from pathlib import Path


def _loaded_after(code: str) -> list[str]:
    """The pipetrail modules a new interpreter has loaded after running ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return [m for m in json.loads(out.strip().splitlines()[-1]) if m.startswith("pipetrail")]


def test_every_public_name_has_its_module() -> None:
    exports = pipetrail._EXPORTS  # type: ignore[attr-defined]
    assert set(exports) == set(pipetrail.__all__) - {"__version__"}
    for name, module in exports.items():
        assert getattr(pipetrail, name) is getattr(importlib.import_module(module), name)


@pytest.mark.parametrize(
    ("code", "absent"),
    [
        ("import pipetrail", ["pipetrail.execution", "pipetrail.store", "pipetrail.ledger"]),
        (
            "import pipetrail.capture.sources",
            ["pipetrail.execution", "pipetrail.store", "pipetrail.capture.environment"],
        ),
        ("from pipetrail import source", ["pipetrail.execution", "pipetrail.store"]),
        (
            "import pipetrail.store.local",
            [
                "pipetrail.execution",
                "pipetrail.ledger",
                "pipetrail.store.verify",  # the package's names come from their modules
                "pipetrail.store.memory",
                "pipetrail.store.serializers.registry",
            ],
        ),
        (
            "from pipetrail.store.serializers import StoredArtifact",
            ["pipetrail.store.serializers.registry", "pipetrail.store.verify"],
        ),
    ],
)
def test_importing_a_part_does_not_import_the_rest(code: str, absent: list[str]) -> None:
    loaded = _loaded_after(code)
    assert [m for m in absent if m in loaded] == []


def test_the_help_of_the_command_line_loads_no_runner() -> None:
    code = (
        "import sys\nfrom pipetrail.cli.main import cli\n"
        "try:\n    cli(['--help'], prog_name='pipetrail')\nexcept SystemExit:\n    pass"
    )
    loaded = _loaded_after(code)
    assert "pipetrail.execution.runner" not in loaded
    assert "pipetrail.ledger" not in loaded
    # The subcommands of `runs` and `audit` are listed without their modules.
    modules = ("pipetrail.cli.gc_cmd", "pipetrail.cli.audit_cmd", "pipetrail.cli.bundle_cmd")
    assert [m for m in modules if m in loaded] == []


def test_lazy_exports_imports_on_first_use_and_keeps_the_value() -> None:
    package = types.ModuleType("lazy_probe_package")
    sys.modules[package.__name__] = package
    try:
        getattr_, dir_ = lazy_exports(package.__name__, {"dumps": "json", "nothing": "json"})
        assert getattr_("dumps") is json.dumps
        assert vars(package)["dumps"] is json.dumps  # kept: later reads skip the hook
        assert {"dumps", "nothing"} <= set(dir_())
        with pytest.raises(AttributeError, match="no attribute 'missing'"):
            getattr_("missing")
        with pytest.raises(AttributeError, match="nothing"):
            getattr_("nothing")  # listed, but its module has no such name
    finally:
        del sys.modules[package.__name__]


# -- what a command does not import ----------------------------------------------------
_COMMAND_PROBE = """
import json, runpy, sys
sys.argv = ["pipetrail", *json.loads(sys.argv[1])]
try:
    runpy.run_module("pipetrail.cli.main", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
print("\\nMODULES " + json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


def _command_modules(folder: Path, *args: str) -> tuple[str, set[str]]:
    """Run ``pipetrail ARGS`` in a new interpreter (output to a pipe); return its output
    and the modules it had loaded when the command ended."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPETRAIL_")}
    done = subprocess.run(
        [sys.executable, "-c", _COMMAND_PROBE, json.dumps(args)],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=env,
    )
    output, _, tail = done.stdout.rpartition("\nMODULES ")
    assert tail, done.stderr
    found = json.loads(tail)
    assert found["code"] in (0, None), done.stderr + output
    return output, set(found["modules"])


def _loaded(modules: set[str], names: list[str]) -> list[str]:
    """The ``names`` (or their submodules) among ``modules``."""
    return [n for n in names if any(m == n or m.startswith(n + ".") for m in modules)]


CHAIN = """
import logging
from pipetrail import pipeline, step

LOG = logging.getLogger("chain")

@step
def inc(x: int) -> int:
    return x + 1

@step
def told(x: int) -> int:
    LOG.debug("told %s", x)
    return x * 2

@pipeline
def chain():
    return told(inc(inc(0)))
"""


@pytest.fixture(scope="module")
def aged_projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The module's projects (``chain.py``; ``folder_count.py`` and its data), not yet run.

    A project folder is on sys.path when its pipeline runs: the stat and environment
    caches are written only once the folder is older than their racy window
    (capture.environment). The projects are made first and that window waited out once
    for all of them, so a first run writes the caches and a cached run reads them,
    however busy the machine.
    """
    chain = tmp_path_factory.mktemp("chain") / "project"
    chain.mkdir()
    _command_modules(chain, "init")
    (chain / "chain.py").write_text(CHAIN)
    stored = tmp_path_factory.mktemp("stored") / "project"
    stored.mkdir()
    _command_modules(stored, "init")
    (stored / "data").mkdir()
    for i in range(3):
        (stored / "data" / f"f{i}.bin").write_bytes(bytes([i]) * (2 << 20))  # pooled sizes
    (stored / "folder_count.py").write_text(FOLDER)
    time.sleep(2.1)
    return {"chain": chain, "stored": stored}


@pytest.fixture(scope="module")
def chain_project(aged_projects: dict[str, Path]) -> Path:
    """A project after one run of ``chain.py``, shared by the module's tests.

    They list its runs or run it again from the cache: nothing either does changes what
    the other checks (a cached run adds a row under the first run's).
    """
    folder = aged_projects["chain"]
    output, _ = _command_modules(folder, "run", "chain.py", "-q")
    assert "3 executed, 0 cached" in output
    return folder


def test_listing_runs_to_a_pipe_or_as_json_imports_no_rich_and_no_runner(
    chain_project: Path,
) -> None:
    heavy = [
        "rich",
        "pipetrail.execution.runner",
        "pipetrail.store",
        "sqlalchemy",
        "pipetrail.ledger.event_records",  # one typed record per event kind: not listed here
        # A listing appends no event and verifies none: no event types, no event checks.
        "pipetrail.ledger.events",
        "pipetrail.ledger.trusted",
        "pipetrail.hashing",
    ]
    output, modules = _command_modules(chain_project, "runs")
    assert "chain" in output
    assert "3 run, 0 cached / 3" in output
    assert _loaded(modules, heavy) == []
    output, modules = _command_modules(chain_project, "runs", "--json")
    assert json.loads(output)[0]["pipeline"] == "chain"
    assert _loaded(modules, heavy) == []


def test_listing_the_runs_of_a_new_project_imports_no_read_model_and_no_hashing(
    tmp_path: Path,
) -> None:
    # Nothing to list and no option to check against the runs: none of what reads, or
    # verifies, a run's record is needed (the start-up of `pipetrail runs`).
    unneeded = [
        "pipetrail.execution",  # explain and crash: a run's status and summary
        "pipetrail.ledger.read_model",
        "pipetrail.ledger.run_query",
        "pipetrail.ledger.annotations",
        "pipetrail.ledger.projection_rows",
        "pipetrail.ledger.trusted",  # the event checks of the reads that rest on events
        "pipetrail.ledger.events",
        "pipetrail.hashing",
        "pipetrail.capture",
        "rich",
        "sqlalchemy",
    ]
    _command_modules(tmp_path, "init")
    output, modules = _command_modules(tmp_path, "runs")
    assert output.strip() == "no runs yet; start one with `pipetrail run pipeline.py`"
    assert _loaded(modules, unneeded) == []
    output, modules = _command_modules(tmp_path, "runs", "--json", "-n", "5")
    assert json.loads(output) == []
    assert _loaded(modules, unneeded) == []
    # An option is checked as before: against the runs the ledger records (none here).
    output, modules = _command_modules(tmp_path, "runs", "--pipeline", "chain")
    assert output.strip() == "no run matches"
    assert "pipetrail.ledger.read_model" in modules


def test_a_cached_run_on_sqlite_imports_no_sqlalchemy_rich_or_unused_formats(
    chain_project: Path,
) -> None:
    output, modules = _command_modules(chain_project, "run", "chain.py", "-q")
    assert "0 executed, 3 cached of 3 steps" in output
    unused = [
        "sqlalchemy",  # the ledger is SQLite and up to date: no migration to run
        "rich",  # -q and a pipe: the summary line is plain
        "pickle",  # no output is stored or loaded
        "zipfile",
        "shutil",
        "yaml",  # no params file
        "pipetrail.execution.params_files",
        "pipetrail.core.contract",  # no step declares a contract
        "pipetrail.contracts.fingerprint",
        "pipetrail.store.sealed",  # nothing is sensitive: nothing is sealed
        "pipetrail.capture.git",  # no repository holds the project
        "pipetrail.execution.quotas",  # no [quotas]
        "pipetrail.execution.parity",  # parity is off
        "pipetrail.execution.task",  # no step executes
        "pipetrail.execution.metrics",  # nor records metrics
        "pipetrail.execution.telemetry",  # no [telemetry]: no trace is built or sent
        "pipetrail.execution.boundaries",
        "pipetrail.capture.output",
        "pipetrail.ledger.audit",  # nothing walks the chain
        "pipetrail.execution.node_pairing",  # nothing is compared
        "concurrent.futures",  # no source is stored in parallel
        # The end-of-run line reads the statuses only: no summary, no typed events.
        "pipetrail.execution.explain",
        "pipetrail.ledger.read_model",
        "pipetrail.ledger.event_records",
        "pipetrail.store.verify",
        "tomllib",  # the configuration's validation is recorded; no [audit] or [telemetry]
        "pipetrail.cli.gc_cmd",  # `runs delete|pin|unpin`
        "pipetrail.cli.bundle_cmd",  # `audit bundle|verify-bundle`
    ]
    assert _loaded(modules, unused) == []


def test_logger_and_random_values_fingerprint_the_same_whichever_is_imported_first() -> None:
    probe = (
        "import json, sys\n"
        "{first}\n"
        "from pipetrail.hashing import fingerprint\n"
        "loaded = [m for m in ('logging', 'random') if m in sys.modules]\n"
        "{then}\n"
        "class Mine(random.Random):\n    pass\n"
        "found = [fingerprint(logging.getLogger('a.b')), fingerprint(logging.getLogger()),\n"
        "         fingerprint(random.Random(3)), fingerprint(Mine(3))]\n"
        "print(json.dumps({{'loaded': loaded, 'found': found}}))"
    )
    imports = "import logging, random"
    late = subprocess.run(
        [sys.executable, "-c", probe.format(first="", then=imports)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    early = subprocess.run(
        [sys.executable, "-c", probe.format(first=imports, then="")],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    late_found, early_found = json.loads(late.stdout), json.loads(early.stdout)
    assert late_found["loaded"] == []  # pipetrail.hashing itself imports neither
    assert late_found["found"] == early_found["found"]
    assert len(set(late_found["found"][:3])) == 3


FOLDER = """
from pathlib import Path

from pipetrail import pipeline, source, step

@step
def count(folder: Path) -> int:
    return sum(1 for p in folder.iterdir())

@pipeline
def folder_count():
    return count(source("data"))
"""


def test_a_cached_run_of_a_stored_folder_makes_no_thread_pool(
    aged_projects: dict[str, Path],
) -> None:
    folder = aged_projects["stored"]
    output, modules = _command_modules(folder, "run", "folder_count.py", "-q")
    assert "1 executed, 0 cached" in output
    assert "concurrent.futures" in modules  # the files were stored from the pool
    output, modules = _command_modules(folder, "run", "folder_count.py", "-q")
    assert "0 executed, 1 cached" in output
    assert _loaded(modules, ["concurrent.futures"]) == []  # nothing was left to store
