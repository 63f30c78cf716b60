"""The distributions cache between runs: damaged files, installs, concurrent writers.

Real processes capture the environment against one cache folder, with a temporary
site folder first on their search path (through ``PYTHONPATH``), as separate runs would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import pipetrail
from pipetrail.capture import distributions, listing_memo
from pipetrail.capture.environment import capture_environment
from tests.unit.capture.test_environment import make_dist, set_mtime, versions

_SRC = str(Path(pipetrail.__file__).resolve().parents[1])
_OLD = 1_000_000_000
_WINDOW_S = distributions._RACY_WINDOW_NS / 1e9 + 0.2

_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from pipetrail.capture import distributions, environment
    listed = []
    real = distributions._listing
    def counting(scanned):
        listed.append(1)
        return real(scanned)
    distributions._listing = counting
    names = {}
    for _ in range(int(sys.argv[2])):
        snapshot = environment.capture_environment(cache_dir=Path(sys.argv[1]))
        names = {d["name"]: d["version"] for d in snapshot["distributions"]}
    print(json.dumps({"listed": len(listed), "versions": names}))
    """
)


def _child(cache: Path, *sites: Path, loops: int = 1) -> subprocess.Popen[str]:
    path = os.pathsep.join([*map(str, sites), _SRC])
    env = {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(cache), str(loops)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _result(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    found: dict[str, Any] = json.loads(out)
    return found


def _site(folder: Path, name: str, version: str) -> Path:
    folder.mkdir(parents=True)
    set_mtime(make_dist(folder, name, version), _OLD)
    set_mtime(folder, _OLD)
    return folder


@pytest.fixture(scope="module")
def aged_sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The site folders of the tests below, made first and old enough (ctime included).

    A folder's ctime is not old enough before the racy window has passed since it was
    made: one wait covers them all. Each test has folders of its own.
    """
    base = tmp_path_factory.mktemp("aged")
    sites = {
        "installed": _site(base / "installed", "fake-one", "1.0"),
        "one": _site(base / "one", "fake-one", "1.0"),
        "two": _site(base / "two", "fake-two", "2.0"),
    }
    time.sleep(_WINDOW_S)
    return sites


def test_a_distribution_installed_between_two_runs_is_seen(
    tmp_path: Path, aged_sites: dict[str, Path]
) -> None:
    site, cache = aged_sites["installed"], tmp_path / "cache"
    first = _result(_child(cache, site))
    assert first["versions"]["fake-one"] == "1.0"
    assert first["listed"] == 1
    again = _result(_child(cache, site))
    assert again == {**first, "listed": 0}  # from the cache

    # `pip install fake-two`: a new .dist-info appears (its mtime pinned to an old value).
    set_mtime(make_dist(site, "fake-two", "2.5"), _OLD)
    set_mtime(site, _OLD)
    after = _result(_child(cache, site))
    assert after["listed"] == 1
    assert after["versions"]["fake-two"] == "2.5"

    # ... and removed again.
    for child in (site / "fake_two-2.5.dist-info").iterdir():
        child.unlink()
    (site / "fake_two-2.5.dist-info").rmdir()
    set_mtime(site, _OLD)
    removed = _result(_child(cache, site))
    assert "fake-two" not in removed["versions"]


@pytest.fixture
def cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cache file written for a fake site alone on sys.path; returns the file."""
    site = _site(tmp_path / "site", "fake-pkg", "1.0")
    monkeypatch.setattr(sys, "path", [str(site)])
    cache = tmp_path / "cache"
    assert versions(capture_environment(cache_dir=cache))["fake-pkg"] == "1.0"
    assert (cache / "distributions.json").is_file()
    return cache / "distributions.json"


def _edit(cache_file: Path, *, recheck: bool, **changes: Any) -> None:
    check, _, text = cache_file.read_bytes().partition(b"\n")
    data = json.loads(text)
    for item in data["distributions"]:
        if item["name"] == "fake-pkg":
            item["version"] = "6.6.6"  # a trusted file would report this version
    data.update(changes)
    if recheck:
        cache_file.write_bytes(distributions._cache_payload(data))
    else:
        cache_file.write_bytes(check + b"\n" + json.dumps(data, separators=(",", ":")).encode())


def test_the_cache_is_used_when_it_is_intact(cached: Path) -> None:
    _edit(cached, recheck=True)
    assert versions(capture_environment(cache_dir=cached.parent))["fake-pkg"] == "6.6.6"


@pytest.mark.parametrize(
    ("recheck", "changes"),
    [
        (False, {}),  # edited by hand
        (True, {"pipetrail": "0.0.0"}),  # another pipetrail version
        (True, {"format": 3}),  # another cache format
    ],
)
def test_an_edited_or_foreign_cache_is_ignored_and_rewritten(
    cached: Path, recheck: bool, changes: dict[str, Any]
) -> None:
    _edit(cached, recheck=recheck, **changes)
    assert versions(capture_environment(cache_dir=cached.parent))["fake-pkg"] == "1.0"
    assert distributions._read_cache(cached) is not None  # rewritten, valid again
    assert versions(capture_environment(cache_dir=cached.parent))["fake-pkg"] == "1.0"


def test_a_truncated_cache_is_ignored(cached: Path) -> None:
    data = cached.read_bytes()
    cached.write_bytes(data[: len(data) // 2])
    assert versions(capture_environment(cache_dir=cached.parent))["fake-pkg"] == "1.0"
    assert distributions._read_cache(cached) is not None


def test_concurrent_runs_leave_the_cache_consistent(
    tmp_path: Path, aged_sites: dict[str, Path]
) -> None:
    one, two, cache = aged_sites["one"], aged_sites["two"], tmp_path / "cache"
    # Two search paths with different keys: the processes keep replacing each other's
    # file, each read must still be whole and right.
    procs = [(_child(cache, site, loops=25), site) for site in (one, two, one, two)]
    for proc, site in procs:
        found = _result(proc)
        assert ("fake-one" in found["versions"]) == (site == one)
        assert ("fake-two" in found["versions"]) == (site == two)
    assert distributions._read_cache(cache / "distributions.json") is not None
    assert not [p for p in cache.iterdir() if p.name.startswith(".distributions-")]


def test_an_unchanged_cache_is_parsed_once_per_process_and_an_edit_is_seen(
    cached: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[int] = []
    real = distributions._parse_cache

    def counting(payload: bytes) -> dict[str, Any] | None:
        parsed.append(1)
        return real(payload)

    time.sleep(_WINDOW_S)  # the site folder is old enough now: its listing is cached too
    capture_environment(cache_dir=cached.parent)
    time.sleep(_WINDOW_S)  # a file changed within the racy window is read every time
    monkeypatch.setattr(distributions, "_parse_cache", counting)
    for _ in range(3):
        listing_memo.forget()  # the process's listing aside: the file is what is checked
        assert versions(capture_environment(cache_dir=cached.parent))["fake-pkg"] == "1.0"
    assert len(parsed) == 1  # read once, then remembered while unchanged

    _edit(cached, recheck=False)  # same name, other bytes: a new ctime, read again
    assert versions(capture_environment(cache_dir=cached.parent))["fake-pkg"] == "1.0"
    assert len(parsed) == 2
    _edit(cached, recheck=True)
    assert versions(capture_environment(cache_dir=cached.parent))["fake-pkg"] == "6.6.6"
