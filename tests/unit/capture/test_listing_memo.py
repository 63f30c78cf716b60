"""The distributions listing a process reuses between its runs (capture.listing_memo).

A long-lived process (a sweep, a notebook) must see an install, an upgrade, a removal or
a damaged cache file between two of its runs exactly as a new process would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.capture import distributions, listing_memo
from pipetrail.capture.environment import capture_environment
from tests.unit.capture.test_environment import make_dist, set_mtime, versions

if TYPE_CHECKING:
    from pathlib import Path

_OLD = 1_000_000_000
_WINDOW_S = distributions._RACY_WINDOW_NS / 1e9 + 0.2


@pytest.fixture(scope="module")
def _aged_sites(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> list[Path]:
    """One fresh site folder for each test of this module that asks for :func:`site`.

    A folder's ctime cannot be set back, so a folder is old enough only once the racy
    window has passed since it was made: all are made first and aged by one wait, instead
    of a wait per test. Nothing touches a folder before the test that takes it.
    """
    base = tmp_path_factory.mktemp("sites")
    items = [i for i in request.session.items if getattr(i, "module", None) is request.module]
    count = sum("site" in item.fixturenames for item in items)
    folders = [_new_site(base / f"site{number}") for number in range(count)]
    time.sleep(_WINDOW_S)
    return folders


def _new_site(folder: Path) -> Path:
    folder.mkdir()
    set_mtime(make_dist(folder, "fake-pkg", "1.0"), _OLD)
    set_mtime(folder, _OLD)
    return folder


@pytest.fixture
def site(_aged_sites: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A site folder alone on sys.path, old enough (ctime included) to be remembered."""
    if _aged_sites:
        folder = _aged_sites.pop()
    else:  # a test run again (one more than were counted) makes and ages its own
        folder = _new_site(tmp_path / "site")
        time.sleep(_WINDOW_S)
    monkeypatch.setattr(sys, "path", [str(folder)])
    return folder


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many full checks (cache key built) and listings the captures made."""
    counts = {"full": 0, "listed": 0}
    real_key, real_list = distributions._distributions_key, distributions._listing

    def key(*args: Any) -> Any:
        counts["full"] += 1
        return real_key(*args)

    def listing(scanned: Any) -> list[dict[str, Any]]:
        counts["listed"] += 1
        return real_list(scanned)

    monkeypatch.setattr(distributions, "_distributions_key", key)
    monkeypatch.setattr(distributions, "_listing", listing)
    return counts


def test_later_runs_of_a_process_reuse_its_listing(
    site: Path, tmp_path: Path, checks: dict[str, int]
) -> None:
    cache = tmp_path / "cache"
    first = capture_environment(cache_dir=cache)
    for _ in range(3):
        again = capture_environment(cache_dir=cache)
        assert again["distributions"] == first["distributions"]
        assert again["distributions"] is not first["distributions"]  # the caller's own list
    assert checks == {"full": 1, "listed": 1}
    assert versions(first) == {"fake-pkg": "1.0"}


def test_an_install_upgrade_and_removal_between_runs_are_seen(
    site: Path, tmp_path: Path, checks: dict[str, int]
) -> None:
    cache = tmp_path / "cache"
    capture_environment(cache_dir=cache)
    capture_environment(cache_dir=cache)
    assert checks["full"] == 1

    # `pip install other`, mtimes pinned back: the folder's ctime still moves.
    set_mtime(make_dist(site, "other", "2.0"), _OLD)
    set_mtime(site, _OLD)
    assert versions(capture_environment(cache_dir=cache)) == {"fake-pkg": "1.0", "other": "2.0"}

    # An upgrade of fake-pkg: the old .dist-info goes, a new one comes.
    (old,) = site.glob("fake_pkg-*.dist-info")
    for child in old.iterdir():
        child.unlink()
    old.rmdir()
    set_mtime(make_dist(site, "fake-pkg", "1.1"), _OLD)
    set_mtime(site, _OLD)
    assert versions(capture_environment(cache_dir=cache)) == {"fake-pkg": "1.1", "other": "2.0"}

    # Removed again.
    for child in (site / "other-2.0.dist-info").iterdir():
        child.unlink()
    (site / "other-2.0.dist-info").rmdir()
    set_mtime(site, _OLD)
    assert versions(capture_environment(cache_dir=cache)) == {"fake-pkg": "1.1"}
    assert checks["listed"] == 4


def test_a_legacy_egg_info_rewritten_in_place_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checks: dict[str, int]
) -> None:
    folder = tmp_path / "site"
    egg_info = folder / "legacy.egg-info"
    egg_info.mkdir(parents=True)
    pkg_info = egg_info / "PKG-INFO"
    pkg_info.write_text("Metadata-Version: 1.1\nName: legacy\nVersion: 1.0\n")
    for path in (pkg_info, egg_info, folder):
        set_mtime(path, _OLD)
    monkeypatch.setattr(sys, "path", [str(folder)])
    time.sleep(_WINDOW_S)
    cache = tmp_path / "cache"
    assert versions(capture_environment(cache_dir=cache)) == {"legacy": "1.0"}
    capture_environment(cache_dir=cache)
    assert checks["full"] == 1  # remembered

    # `setup.py develop` after a version bump: no folder on the path changes at all.
    pkg_info.write_text("Metadata-Version: 1.1\nName: legacy\nVersion: 2.0\n")
    set_mtime(pkg_info, _OLD + 60)
    assert versions(capture_environment(cache_dir=cache)) == {"legacy": "2.0"}
    assert checks["listed"] == 2


def test_a_changed_search_path_or_working_directory_is_seen(
    site: Path, tmp_path: Path, checks: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    other = tmp_path / "other"
    set_mtime(make_dist(other, "another", "3.1"), _OLD)
    here = tmp_path / "here"
    set_mtime(make_dist(here, "local-pkg", "0.1"), _OLD)
    monkeypatch.chdir(tmp_path)
    capture_environment(cache_dir=cache)

    monkeypatch.setattr(sys, "path", [str(other), *sys.path])
    assert "another" in versions(capture_environment(cache_dir=cache))

    # An empty entry is the working directory: moving elsewhere changes what it holds.
    monkeypatch.setattr(sys, "path", ["", str(site)])
    assert "local-pkg" not in versions(capture_environment(cache_dir=cache))
    monkeypatch.chdir(here)
    assert "local-pkg" in versions(capture_environment(cache_dir=cache))


@pytest.mark.parametrize("damage", ["truncated", "edited", "removed"])
def test_a_cache_file_damaged_between_runs_is_rebuilt(
    site: Path, tmp_path: Path, checks: dict[str, int], damage: str
) -> None:
    cache = tmp_path / "cache"
    cache_file = cache / "distributions.json"
    capture_environment(cache_dir=cache)
    capture_environment(cache_dir=cache)
    assert checks["full"] == 1
    data = cache_file.read_bytes()
    if damage == "truncated":
        cache_file.write_bytes(data[: len(data) // 2])
    elif damage == "edited":
        cache_file.write_bytes(data.replace(b'"1.0"', b'"6.6"'))  # its check now fails
    else:
        cache_file.unlink()

    assert versions(capture_environment(cache_dir=cache)) == {"fake-pkg": "1.0"}
    assert checks["full"] == 2
    assert distributions._read_cache(cache_file) is not None  # rebuilt, valid again


def test_a_listing_resting_on_a_recent_change_is_not_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checks: dict[str, int]
) -> None:
    folder = tmp_path / "site"
    set_mtime(make_dist(folder, "fake-pkg", "1.0"), _OLD)
    set_mtime(folder, _OLD)  # its ctime is now: a second change could share its tick
    monkeypatch.setattr(sys, "path", [str(folder)])
    cache = tmp_path / "cache"
    capture_environment(cache_dir=cache)
    capture_environment(cache_dir=cache)
    assert checks["full"] == 2


def test_stamps_follow_each_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "there").mkdir()
    (tmp_path / "sub").mkdir()
    missing = str(tmp_path / "sub" / "missing")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "there"), missing])
    before = listing_memo.path_stamps()
    assert before[0] == sys.executable
    assert before[2] == (missing, None)
    os.mkdir(missing)
    after = listing_memo.path_stamps()
    assert after[1] == before[1]
    assert after[2] != before[2]
    assert listing_memo.newest_stamp(after) >= os.stat(missing).st_ctime_ns


def test_threads_capturing_at_once_agree(
    site: Path, tmp_path: Path, checks: dict[str, int]
) -> None:
    cache = tmp_path / "cache"
    found: list[dict[str, str]] = []

    def capture() -> None:
        for _ in range(20):
            found.append(versions(capture_environment(cache_dir=cache)))

    threads = [threading.Thread(target=capture) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert found == [{"fake-pkg": "1.0"}] * 80
    assert checks["listed"] >= 1
    assert checks["full"] < 80  # most were served by the remembered listing
    assert distributions._read_cache(cache / "distributions.json") is not None


@pytest.mark.parametrize("through", ["list_distributions", "cache_miss"])
def test_a_stale_listing_put_back_by_another_thread_is_listed_again(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, through: str
) -> None:
    # On a cache miss the listing is checked against the names the cache key read, not
    # against the folders read again: stale names are caught all the same.
    import importlib.metadata

    assert versions({"distributions": distributions.list_distributions()}) == {"fake-pkg": "1.0"}
    set_mtime(make_dist(site, "other", "2.0"), _OLD)
    set_mtime(site, _OLD)  # importlib.metadata keys its names by the folder's mtime
    real = distributions._forget_listing_caches
    calls = []

    def first_one_undone() -> None:
        # As if another thread put the folder's old names back right after the clear.
        calls.append(1)
        if len(calls) > 1:
            real()

    monkeypatch.setattr(distributions, "_forget_listing_caches", first_one_undone)
    if through == "cache_miss":
        listed = capture_environment(cache_dir=tmp_path / "cache")["distributions"]
    else:
        listed = distributions.list_distributions()
    assert versions({"distributions": listed}) == {"fake-pkg": "1.0", "other": "2.0"}
    assert len(calls) == 2
    assert importlib.metadata.version("other") == "2.0"


class _CountingOs:
    """``os`` as one module sees it, counting which folders it lists or scans."""

    def __init__(self) -> None:
        self.read: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def listdir(self, path: str) -> list[str]:
        self.read.append(os.fspath(path))
        return os.listdir(path)

    def scandir(self, path: str) -> Any:
        self.read.append(os.fspath(path))
        return os.scandir(path)


def test_a_cache_miss_reads_each_search_path_folder_once(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, checks: dict[str, int]
) -> None:
    counting = _CountingOs()
    monkeypatch.setattr(distributions, "os", counting)
    snapshot = capture_environment(cache_dir=tmp_path / "cache")
    assert versions(snapshot) == {"fake-pkg": "1.0"}
    assert checks == {"full": 1, "listed": 1}  # a miss: the key built, then a listing
    assert counting.read == [str(site)]  # for the key; the listing's check reuses its names


_BACKPORT = r"""
import importlib.metadata  # before sys.path is narrowed to the site folder alone
import json, os, sys
import importlib_metadata  # puts its own finder, with its own cache, on sys.meta_path
from pipetrail.capture.environment import list_distributions

site = sys.argv[1]


def dist(name, version):
    folder = os.path.join(site, f"{name}-{version}.dist-info")
    os.mkdir(folder)
    with open(os.path.join(folder, "METADATA"), "w") as out:
        out.write(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    os.utime(folder, ns=(10**18, 10**18))
    os.utime(site, ns=(10**18, 10**18))  # the folder's mtime as it was


dist("first", "1.0")
sys.path[:] = [site]
before = [d["name"] for d in list_distributions()]
dist("second", "2.0")
print(json.dumps([before, [d["name"] for d in list_distributions()]]))
"""


def test_an_install_is_seen_when_a_library_imported_the_importlib_metadata_backport(
    tmp_path: Path,
) -> None:
    # A process where some library imported importlib_metadata (the backport answers for
    # the standard library from then on): the same two listings as any other process.
    site = tmp_path / "site"
    site.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", _BACKPORT, str(site)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [["first"], ["first", "second"]]
