"""Environment exports from a synthetic snapshot: requirements, pylock.toml, Dockerfile."""

from __future__ import annotations

import copy
import re
import tomllib
from typing import Any

import pytest
import tomli_w
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from pipetrail.lineage.environment import RecordedEnvironment
from pipetrail.lineage.exports.environment import (
    base_image,
    dockerfile_text,
    pylock_text,
    requirements_text,
)

SNAPSHOT: dict[str, Any] = {
    "schema_version": 1,
    "python": {"version": "3.11.9", "implementation": "CPython", "executable": "/v/bin/python"},
    "os": {
        "system": "Linux",
        "release": "6.1.0",
        "machine": "x86_64",
        "libc": "glibc 2.36",
        "distro": {"id": "debian", "version_id": "12", "codename": "bookworm", "name": "Debian 12"},
    },
    "distributions": [
        {"name": "numpy", "version": "1.26.4"},
        {
            "name": "mylib",
            "version": "0.3.0",
            "direct_url": {
                "url": "https://github.com/acme/mylib.git",
                "vcs": "git",
                "commit_id": "0123456789abcdef0123456789abcdef01234567",
                "requested_revision": "main",
            },
        },
        {
            "name": "wheelie",
            "version": "1.0",
            "direct_url": {
                "url": "https://files.example.org/wheelie-1.0-py3-none-any.whl",
                "archive_hash": "sha256=" + "ab" * 32,
            },
        },
        {
            "name": "pipetrail",
            "version": "0.1.0.dev0",
            "direct_url": {"url": "file:///srv/pipetrail", "editable": True},
        },
        {"name": "localpkg", "version": "2.0", "direct_url": {"url": "file:///src/localpkg"}},
        {
            "name": "floating",
            "version": "0.1",
            "direct_url": {"url": "https://github.com/acme/floating.git", "vcs": "git"},
        },
    ],
    "env_vars": {"PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "4"},
}


def env(snapshot: dict[str, Any] | None = None) -> RecordedEnvironment:
    return RecordedEnvironment(
        run_id="01RUN",
        pipeline="credit",
        started_at="2025-01-02T03:04:05Z",
        pipetrail_version="0.1.0.dev0",
        snapshot=copy.deepcopy(snapshot or SNAPSHOT),
    )


def requirement_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


# -- requirements ------------------------------------------------------------------------
def test_requirements_pin_every_index_distribution() -> None:
    text = requirements_text(env())
    lines = requirement_lines(text)
    assert "numpy==1.26.4" in lines
    assert "# Needs Python 3.11.9: python -m pip install -r requirements.txt" in text
    assert "Python 3.11.9 (CPython), Linux x86_64, glibc 2.36, Debian 12" in text
    for line in lines:  # every line is a valid PEP 508 requirement
        Requirement(line)


def test_requirements_use_direct_references_when_recorded() -> None:
    lines = requirement_lines(requirements_text(env()))
    assert (
        "mylib @ git+https://github.com/acme/mylib.git@0123456789abcdef0123456789abcdef01234567"
        in lines
    )
    assert (
        "wheelie @ https://files.example.org/wheelie-1.0-py3-none-any.whl#sha256=" + "ab" * 32
        in lines
    )


def test_local_editable_and_unpinned_installs_are_comments() -> None:
    text = requirements_text(env())
    assert not any(
        line.startswith(("pipetrail", "localpkg", "floating")) for line in requirement_lines(text)
    )
    assert (
        "# pipetrail==0.1.0.dev0: an editable install from the local folder "
        "file:///srv/pipetrail; install it from that source"
    ) in text
    assert "# localpkg==2.0: installed from the local folder file:///src/localpkg" in text
    assert (
        "# floating==0.1: installed from git+https://github.com/acme/floating.git with no "
        "recorded commit"
    ) in text


def test_pipetrail_missing_from_the_snapshot_is_mentioned() -> None:
    snap = copy.deepcopy(SNAPSHOT)
    snap["distributions"] = [{"name": "numpy", "version": "1.26.4"}]
    assert "# pipetrail==0.1.0.dev0: recorded the run but was not an installed" in (
        requirements_text(env(snap))
    )


def test_exports_are_deterministic() -> None:
    assert requirements_text(env()) == requirements_text(env())
    assert pylock_text(env()) == pylock_text(env())
    assert dockerfile_text(env()) == dockerfile_text(env())


# -- pylock.toml ---------------------------------------------------------------------------
_SOURCES = ("vcs", "directory", "archive", "sdist", "wheels")


def check_pylock_structure(data: dict[str, Any]) -> None:
    """The PEP 751 rules this exporter can break, checked independently of it."""
    allowed = {"lock-version", "environments", "requires-python", "extras",
               "dependency-groups", "default-groups", "created-by", "packages", "tool"}  # fmt: skip
    assert set(data) <= allowed
    assert data["lock-version"] == "1.0"
    assert isinstance(data["created-by"], str)
    assert isinstance(data["packages"], list)
    names = [p["name"] for p in data["packages"]]
    assert names == sorted(names)
    assert len(set(names)) == len(names)
    for package in data["packages"]:
        assert package["name"] == canonicalize_name(package["name"])
        if "version" in package:
            Version(package["version"])
        assert sum(key in package for key in _SOURCES) <= 1
        if "vcs" in package:
            assert {"type", "commit-id"} <= set(package["vcs"])
            assert ("url" in package["vcs"]) != ("path" in package["vcs"])
        if "directory" in package:
            assert "path" in package["directory"]
            assert "version" not in package  # a source tree: the version is not pinned
        if "archive" in package:
            assert package["archive"]["hashes"]


def test_pylock_structure() -> None:
    data = tomllib.loads(pylock_text(env()))
    check_pylock_structure(data)
    assert data["requires-python"] == "==3.11.9"
    assert data["environments"] == ["sys_platform == 'linux' and platform_machine == 'x86_64'"]
    assert data["created-by"] == "pipetrail"
    assert data["tool"]["pipetrail"] == {
        "run": "01RUN",
        "pipeline": "credit",
        "python": "3.11.9",
        "implementation": "CPython",
    }
    by_name = {p["name"]: p for p in data["packages"]}
    assert by_name["numpy"] == {"name": "numpy", "version": "1.26.4"}
    assert by_name["mylib"]["vcs"] == {
        "type": "git",
        "url": "https://github.com/acme/mylib.git",
        "requested-revision": "main",
        "commit-id": "0123456789abcdef0123456789abcdef01234567",
    }
    assert by_name["pipetrail"] == {
        "name": "pipetrail",
        "directory": {"path": "/srv/pipetrail", "editable": True},
    }
    assert by_name["localpkg"]["directory"] == {"path": "/src/localpkg"}
    assert by_name["wheelie"]["archive"] == {
        "url": "https://files.example.org/wheelie-1.0-py3-none-any.whl",
        "hashes": {"sha256": "ab" * 32},
    }


def test_pylock_direct_sources_pass_the_packaging_validator() -> None:
    pylock = pytest.importorskip("packaging.pylock")
    data = tomllib.loads(pylock_text(env()))
    # Index entries carry no file source (the environment keeps none); entries with one
    # must satisfy the reference validator as they are.
    data["packages"] = [p for p in data["packages"] if any(k in p for k in _SOURCES)]
    assert len(data["packages"]) == 4
    pylock.Pylock.from_dict(data)


@pytest.mark.parametrize(
    "distributions",
    [SNAPSHOT["distributions"], [{"name": "numpy", "version": "1.26.4"}]],
    ids=["mixed-sources", "index-only"],
)
def test_pylock_parses_and_round_trips(distributions: list[dict[str, Any]]) -> None:
    snap = copy.deepcopy(SNAPSHOT)
    snap["distributions"] = copy.deepcopy(distributions)
    text = pylock_text(env(snap))
    header = [line for line in text.splitlines(keepends=True) if line.startswith("#")]
    body = text[len("".join(header)) :]
    assert header
    assert all(line.startswith("# ") for line in header)
    data = tomllib.loads(text)
    check_pylock_structure(data)
    # What the writer wrote is what the TOML writer makes of what was read back.
    assert tomli_w.dumps(data) == body
    assert tomllib.loads(tomli_w.dumps(data)) == data


def test_pylock_strings_are_escaped() -> None:
    snap = copy.deepcopy(SNAPSHOT)
    snap["distributions"] = [
        {"name": "odd", "version": "1.0", "direct_url": {"url": 'file:///a "b"\\c\u00e9\x7f'}}
    ]
    data = tomllib.loads(pylock_text(env(snap)))
    assert data["packages"][0]["directory"]["path"] == '/a "b"\\c\u00e9\x7f'


# -- Dockerfile ----------------------------------------------------------------------------
def test_dockerfile_base_image_and_requirements() -> None:
    text = dockerfile_text(env())
    lines = text.splitlines()
    assert lines[0] == "# syntax=docker/dockerfile:1"
    assert "FROM --platform=linux/amd64 python:3.11.9-slim-bookworm" in lines
    assert 'ENV OMP_NUM_THREADS="4"' in lines
    assert 'ENV PYTHONHASHSEED="0"' in lines
    start = lines.index("COPY <<'REQUIREMENTS' /tmp/requirements.txt")
    end = lines.index("REQUIREMENTS")
    assert "numpy==1.26.4" in lines[start + 1 : end]
    assert lines[end + 1] == "RUN python -m pip install --no-cache-dir -r /tmp/requirements.txt"
    assert len([line for line in lines if line.startswith("FROM ")]) == 1


def _with(os_info: dict[str, Any], python: str = "3.12.4") -> dict[str, Any]:
    return {"python": {"version": python, "implementation": "CPython"}, "os": os_info}


@pytest.mark.parametrize(
    ("os_info", "image", "note"),
    [
        ({"system": "Linux", "distro": {"id": "debian", "codename": "bullseye"}},
         "python:3.12.4-slim-bullseye", None),
        ({"system": "Linux", "distro": {"id": "alpine", "version_id": "3.19.1"}},
         "python:3.12.4-alpine3.19", None),
        ({"system": "Linux", "libc": "glibc 2.35", "distro": {"id": "ubuntu", "name": "U 22"}},
         "python:3.12.4-slim-bookworm", "U 22 (glibc 2.35); Debian bookworm has glibc 2.36"),
        ({"system": "Linux", "libc": "glibc 2.39"},
         "python:3.12.4-slim-trixie", "glibc 2.39"),
        ({"system": "Linux", "libc": "glibc 2.45"},
         "python:3.12.4-slim-trixie", "newer than any Debian base"),
        ({"system": "Linux"}, "python:3.12.4-slim-bookworm", "without a recorded glibc"),
        ({"system": "Darwin", "machine": "arm64"},
         "python:3.12.4-slim-bookworm", "the run was on Darwin"),
    ],
)  # fmt: skip
def test_base_image_follows_the_recorded_os(
    os_info: dict[str, Any], image: str, note: str | None
) -> None:
    found, notes = base_image(_with(os_info))
    assert found == image
    if note is None:
        assert notes == []
    else:
        assert any(note in n for n in notes), notes


def test_base_image_for_an_unrecorded_python_and_another_implementation() -> None:
    found, notes = base_image({"os": {"system": "Linux", "libc": "glibc 2.36"}})
    assert found == "python:3-slim-bookworm"
    assert any("Python version was not recorded" in n for n in notes)
    found, notes = base_image(
        _with({"system": "Linux", "libc": "glibc 2.36"})
        | {"python": {"version": "3.10.14", "implementation": "PyPy"}}
    )
    assert any("PyPy" in n for n in notes)


def test_python_version_appears_in_every_format() -> None:
    for text in (requirements_text(env()), pylock_text(env()), dockerfile_text(env())):
        assert re.search(r"3\.11\.9", text)
