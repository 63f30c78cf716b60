"""Which distribution provides each module, through the cache a run reads it from.

Real processes look modules up against one cache folder, with a temporary site folder
first on their search path (through ``PYTHONPATH``), as separate runs would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pipetrail
from pipetrail.capture import distributions
from pipetrail.capture.distributions import cached_module_distributions, module_distributions
from pipetrail.hashing import locality
from tests.unit.capture.test_environment import make_dist, set_mtime

if TYPE_CHECKING:
    import pytest

_SRC = str(Path(pipetrail.__file__).resolve().parents[1])
_OLD = 1_000_000_000
_WINDOW_S = distributions._RACY_WINDOW_NS / 1e9 + 0.2

_CHILD = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from pipetrail.capture import distributions
    from pipetrail.hashing import locality
    listed = []
    real = distributions.module_distributions
    def counting():
        listed.append(1)
        return real()
    distributions.module_distributions = counting
    lookup = lambda: distributions.cached_module_distributions(Path(sys.argv[1]))
    with locality.using_module_distributions(lookup):
        found = {m: locality.distribution_of(m) for m in ("fakemod", "othermod", "json")}
    print(json.dumps({"listed": len(listed), "found": found,
                      "metadata": "importlib.metadata" in sys.modules}))
    """
)


def _child(cache: Path, site: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), _SRC])}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(cache)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def _provide(site: Path, name: str, version: str, module: str) -> None:
    dist = make_dist(site, name, version)
    (dist / "top_level.txt").write_text(f"{module}\n", encoding="utf-8")
    set_mtime(dist, _OLD)
    set_mtime(site, _OLD)


def test_the_cached_answers_are_those_of_importlib_metadata(tmp_path: Path) -> None:
    first = cached_module_distributions(tmp_path)
    assert first == module_distributions()
    assert first == cached_module_distributions(tmp_path)
    assert first["click"][0].lower() == "click"
    for top, found in first.items():
        # distribution_of without a cache: importlib.metadata, module by module.
        assert locality.distribution_of.__wrapped__(top) == found  # type: ignore[attr-defined]


def test_a_run_reads_the_modules_from_the_cache_and_sees_an_install(tmp_path: Path) -> None:
    site, cache = tmp_path / "site", tmp_path / "cache"
    site.mkdir()
    _provide(site, "fake-one", "1.0", "fakemod")
    time.sleep(_WINDOW_S)  # the folders' ctime must be old enough to be kept

    first = _child(cache, site)
    assert first["listed"] == 1
    assert first["found"] == {"fakemod": ["fake-one", "1.0"], "othermod": None, "json": None}
    assert (cache / "module_distributions.json").is_file()
    again = _child(cache, site)
    assert again == {**first, "listed": 0, "metadata": False}  # nothing read the metadata

    # `pip install fake-two`: a new .dist-info providing another module.
    _provide(site, "fake-two", "2.5", "othermod")
    after = _child(cache, site)
    assert after["listed"] == 1
    assert after["found"]["othermod"] == ["fake-two", "2.5"]


def test_a_damaged_cache_file_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site, cache = tmp_path / "site", tmp_path / "cache"
    site.mkdir()
    _provide(site, "fake-one", "1.0", "fakemod")
    monkeypatch.setattr(sys, "path", [str(site)])
    first = cached_module_distributions(cache)
    assert first == {"fakemod": ("fake-one", "1.0")}
    cache_file = cache / "module_distributions.json"
    check, _, text = cache_file.read_bytes().partition(b"\n")
    data = json.loads(text)
    data["modules"]["fakemod"] = ["fake-one", "6.6.6"]  # a trusted file would answer this
    cache_file.write_bytes(check + b"\n" + json.dumps(data, separators=(",", ":")).encode())
    assert cached_module_distributions(cache) == first
    cache_file.write_bytes(b"torn")
    assert cached_module_distributions(cache) == first
