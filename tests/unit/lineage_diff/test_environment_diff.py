"""diff_environments over synthetic snapshots (schema of pipetrail.capture.environment)."""

from __future__ import annotations

import copy
from typing import Any

from pipetrail.lineage.diff import Change, MappingDiff, diff_environments


def _snapshot() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "python": {
            "version": "3.11.9",
            "implementation": "CPython",
            "executable": "/venv-a/bin/python",
            "prefix": "/venv-a",
        },
        "os": {
            "system": "Linux",
            "release": "6.1.0",
            "version": "#1 SMP",
            "machine": "x86_64",
            "platform": "Linux-6.1.0-x86_64-with-glibc2.36",
            "libc": "glibc 2.36",
        },
        "cpu": {"model": "Intel Xeon", "logical_cores": 8, "physical_cores": 4},
        "memory": {"total_bytes": 16 * 2**30},
        "gpu": [],
        "distributions": [
            {"name": "numpy", "version": "1.26.4"},
            {"name": "pandas", "version": "2.2.2"},
            {"name": "scikit-learn", "version": "1.4.2"},
        ],
        "env_vars": {"OMP_NUM_THREADS": "4"},
    }


def test_identical_snapshots_are_the_same() -> None:
    result = diff_environments(_snapshot(), _snapshot())
    assert result.same
    assert result.packages.empty
    assert result.python == result.os == result.hardware == {}
    assert result.note is None


def test_packages_added_removed_and_changed() -> None:
    a, b = _snapshot(), _snapshot()
    b["distributions"] = [
        {"name": "numpy", "version": "2.0.0"},
        {"name": "pandas", "version": "2.2.2"},
        {"name": "torch", "version": "2.3.0"},
    ]
    result = diff_environments(a, b)
    assert not result.same
    assert result.packages == MappingDiff(
        added={"torch": "2.3.0"},
        removed={"scikit-learn": "1.4.2"},
        changed={"numpy": Change("1.26.4", "2.0.0")},
    )


def test_python_os_hardware_and_env_vars() -> None:
    a, b = _snapshot(), copy.deepcopy(_snapshot())
    b["python"]["version"] = "3.12.3"
    b["os"]["release"] = "6.8.0"
    b["cpu"] = {"model": "AMD EPYC", "logical_cores": 32, "physical_cores": 16}
    b["memory"]["total_bytes"] = 64 * 2**30
    b["gpu"] = [{"name": "NVIDIA A100", "driver": "550.54", "memory": "40960 MiB"}]
    b["env_vars"] = {"OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    result = diff_environments(a, b)
    assert result.python == {"version": Change("3.11.9", "3.12.3")}
    assert result.os == {"release": Change("6.1.0", "6.8.0")}
    assert result.hardware == {
        "cpu.model": Change("Intel Xeon", "AMD EPYC"),
        "cpu.logical_cores": Change(8, 32),
        "cpu.physical_cores": Change(4, 16),
        "memory.total_bytes": Change(16 * 2**30, 64 * 2**30),
        "gpu": Change([], ["NVIDIA A100 (40960 MiB)"]),
    }
    assert result.env_vars.added == {"PYTHONHASHSEED": "0"}
    assert result.env_vars.changed == {"OMP_NUM_THREADS": Change("4", "1")}


def test_interpreter_paths_are_not_reported_but_the_snapshots_differ() -> None:
    a, b = _snapshot(), _snapshot()
    b["python"]["executable"] = "/venv-b/bin/python"
    b["python"]["prefix"] = "/venv-b"
    result = diff_environments(a, b)
    assert not result.same
    assert result.python == {}


def test_equal_digests_decide_sameness() -> None:
    result = diff_environments(_snapshot(), _snapshot(), digests=("blake3:1", "blake3:2"))
    assert not result.same
    result = diff_environments(_snapshot(), _snapshot(), digests=("blake3:1", "blake3:1"))
    assert result.same


def test_a_missing_snapshot_is_noted_and_compares_as_empty() -> None:
    result = diff_environments(_snapshot(), None)
    assert not result.same
    assert result.note == "the environment snapshot of run B is unavailable"
    assert set(result.packages.removed) == {"numpy", "pandas", "scikit-learn"}
    assert result.python["version"] == Change("3.11.9", None)
