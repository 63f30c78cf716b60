"""Package names are imported on first use: importing one module does not import them all."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import types

import pytest

import pipetrail
from pipetrail.core.lazy import lazy_exports


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
        ("import pipetrail.store.local", ["pipetrail.execution", "pipetrail.ledger"]),
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
