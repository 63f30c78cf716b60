"""Which environment differences count for parity, and how they read."""

from __future__ import annotations

import copy
from typing import Any

from pipetrail.execution.parity import (
    ParityReport,
    describe_difference,
    parity_differences,
)


def snapshot() -> dict[str, Any]:
    return {
        "schema_version": 1,
        "python": {
            "version": "3.11.9",
            "implementation": "CPython",
            "executable": "/a/bin/python",
            "prefix": "/a",
        },
        "os": {
            "system": "Linux",
            "release": "6.1.0",
            "version": "#1 SMP",
            "machine": "x86_64",
            "libc": "glibc 2.36",
            "distro": {"id": "debian", "version_id": "12", "codename": "bookworm"},
        },
        "cpu": {"model": "Xeon", "logical_cores": 8},
        "memory": {"total_bytes": 2**34},
        "gpu": [],
        "distributions": [
            {"name": "numpy", "version": "1.26.4"},
            {"name": "pandas", "version": "2.2.2"},
        ],
        "env_vars": {"OMP_NUM_THREADS": "4"},
    }


def test_equal_environments_have_no_differences() -> None:
    assert parity_differences(snapshot(), snapshot()) == []


def test_what_does_not_count() -> None:
    other = snapshot()
    other["python"]["executable"] = "/b/bin/python"
    other["python"]["prefix"] = "/b"
    other["os"].update(release="6.8.0", version="#2", libc="glibc 2.39")
    other["os"]["distro"] = {"id": "ubuntu", "version_id": "24.04"}
    other["cpu"] = {"model": "EPYC", "logical_cores": 64}
    other["memory"] = {"total_bytes": 2**36}
    other["gpu"] = [{"name": "A100", "driver": "550", "memory": "80 GiB"}]
    other["env_vars"] = {"OMP_NUM_THREADS": "1"}
    assert parity_differences(snapshot(), other) == []


def test_what_counts() -> None:
    other = copy.deepcopy(snapshot())
    other["python"]["version"] = "3.12.4"
    other["os"]["machine"] = "aarch64"
    other["distributions"] = [
        {"name": "numpy", "version": "2.0.0"},
        {"name": "scikit-learn", "version": "1.5.0"},
    ]
    found = parity_differences(snapshot(), other)
    assert found == [
        {"kind": "python", "name": "python.version", "reference": "3.11.9", "current": "3.12.4"},
        {"kind": "os", "name": "os.machine", "reference": "x86_64", "current": "aarch64"},
        {"kind": "package", "name": "numpy", "reference": "1.26.4", "current": "2.0.0"},
        {"kind": "package", "name": "pandas", "reference": "2.2.2", "current": None},
        {"kind": "package", "name": "scikit-learn", "reference": None, "current": "1.5.0"},
    ]
    assert [describe_difference(d) for d in found] == [
        "python.version: 3.11.9 in the reference run, 3.12.4 here",
        "os.machine: x86_64 in the reference run, aarch64 here",
        "package numpy: 1.26.4 in the reference run, 2.0.0 here",
        "package pandas: 2.2.2 in the reference run, not installed here",
        "package scikit-learn: not installed in the reference run, 1.5.0 here",
    ]


def test_report_record() -> None:
    report = ParityReport(
        "warn",
        "RUN1",
        [{"kind": "os", "name": "os.system", "reference": "Linux", "current": "Darwin"}],
    )
    assert not report.ok
    assert report.to_record() == {
        "mode": "warn",
        "reference": "RUN1",
        "differences": report.differences,
    }
    missing = ParityReport("strict", "RUN1", note="snapshot unavailable")
    assert not missing.ok
    assert missing.to_record()["note"] == "snapshot unavailable"
    assert ParityReport("warn", "RUN1").ok
