"""The public API is exactly what `__all__` says, and changes show up in review."""

from __future__ import annotations

import importlib

import pytest

import pipetrail

SNAPSHOT = [
    "Contract",
    "ContractViolationError",
    "DefinitionError",
    "NotFoundError",
    "ParamError",
    "Pipeline",
    "PipetrailError",
    "Project",
    "Run",
    "Step",
    "StepFailedError",
    "__version__",
    "attach_report",
    "log_metric",
    "log_metrics",
    "pipeline",
    "register_fingerprint",
    "register_serializer",
    "source",
    "step",
]


def test_all_matches_the_snapshot() -> None:
    assert pipetrail.__all__ == SNAPSHOT


def test_all_is_sorted() -> None:
    assert pipetrail.__all__ == sorted(pipetrail.__all__)


def test_every_name_resolves() -> None:
    for name in pipetrail.__all__:
        assert getattr(pipetrail, name) is not None


def test_no_other_public_names_leak() -> None:
    public = {n for n in vars(pipetrail) if not n.startswith("_")} - {"annotations"}
    modules = {n for n in public if isinstance(getattr(pipetrail, n), type(pipetrail))}
    assert public - modules - set(pipetrail.__all__) == set()


@pytest.mark.parametrize(
    "package",
    ["pipetrail.store", "pipetrail.capture", "pipetrail.contracts", "pipetrail.execution"],
)
def test_subpackage_all_is_sorted_and_resolves(package: str) -> None:
    module = importlib.import_module(package)
    names = module.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(module, name)


def test_importing_pipetrail_does_not_import_heavy_dependencies() -> None:
    import subprocess
    import sys

    code = (
        "import sys, pipetrail; "
        "heavy = [m for m in ('sqlalchemy', 'pandas', 'pyarrow', 'numpy', 'sklearn', 'alembic', "
        "'pydantic', 'rich') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
