"""The persistent code-analysis cache: reused across processes, never trusted on doubt.

Real processes share one SQLite cache file; the files they fingerprint are real files
whose signature is what the cache is keyed by. A file written less than the racy window
before it is read is never remembered, so the tests that need remembered entries write
their files first and wait out the window once.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import pipetrail
from pipetrail.hashing import code_analysis, code_cache
from pipetrail.hashing.code import code_fingerprint
from pipetrail.hashing.code_cache import CodeCache

_SRC = str(Path(pipetrail.__file__).resolve().parents[1])
_WINDOW_S = code_analysis.RACY_WINDOW_NS / 1e9 + 0.2

HELPERS = """\
def clean(x):
    return x + 1
"""

STEPS = """\
import {helpers}


def f(x):
    return {helpers}.clean(x) * 2
"""

# Run in a child process: fingerprint STEPS's f with (or without) the cache; print the
# digest and how many pieces of source were analyzed rather than read from the cache.
_CHILD = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from pipetrail.hashing import code_analysis
    from pipetrail.hashing.code import code_fingerprint
    from pipetrail.hashing.code_cache import CodeCache
    computed = []
    real = code_analysis._analyze
    def counting(*args):
        computed.append(1)
        return real(*args)
    code_analysis._analyze = counting
    module = __import__(sys.argv[2])
    loops = int(sys.argv[4])
    digests = set()
    for _ in range(loops):
        code_analysis.forget_analyses()
        if sys.argv[3] == "-":
            digests.add(code_fingerprint(module.f).digest)
        else:
            with CodeCache(__import__("pathlib").Path(sys.argv[3])) as cache:
                digests.add(code_fingerprint(module.f, cache).digest)
    print(json.dumps({"digests": sorted(digests), "computed": len(computed)}))
    """
)


def _write(folder: Path, prefix: str) -> tuple[Path, str]:
    """Write a steps module and its helpers module; return the helpers file, steps name."""
    folder.mkdir(parents=True, exist_ok=True)
    helpers, steps = f"{prefix}_helpers", f"{prefix}_steps"
    (folder / f"{helpers}.py").write_text(HELPERS)
    (folder / f"{steps}.py").write_text(STEPS.replace("{helpers}", helpers))
    return folder / f"{helpers}.py", steps


def _child(folder: Path, module: str, cache: Path | None, loops: int = 1) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": _SRC, "PYTHONDONTWRITEBYTECODE": "1"}
    argv = [sys.executable, "-c", _CHILD, str(folder), module, str(cache or "-"), str(loops)]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.fixture
def real_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undo the hashing tests' zero racy window and give these tests a memory again."""
    monkeypatch.setattr(code_analysis, "RACY_WINDOW_NS", 2_000_000_000)
    monkeypatch.setattr(code_cache, "RACY_WINDOW_NS", 2_000_000_000)
    monkeypatch.setattr(code_analysis, "_MEMORY", {})


_MANY = [f"ptcc_many_steps{i}" for i in range(4)]


@pytest.fixture(scope="module")
def aged_projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The project folders of the two tests across processes, old enough to be remembered.

    Their files are written first and the racy window waited out once for both.
    """
    edit = tmp_path_factory.mktemp("edit") / "project"
    _write(edit, "ptcc_edit")
    many = tmp_path_factory.mktemp("many") / "project"
    _write(many, "ptcc_many")
    for name in _MANY:  # each process has its own module file besides the shared helper
        (many / f"{name}.py").write_text(STEPS.replace("{helpers}", "ptcc_many_helpers"))
    time.sleep(_WINDOW_S)
    return {"edit": edit, "many": many}


def test_a_helper_edited_between_two_processes_is_read_again(
    tmp_path: Path, real_window: None, aged_projects: dict[str, Path]
) -> None:
    folder, db = aged_projects["edit"], tmp_path / "code.db"
    helpers, steps = folder / "ptcc_edit_helpers.py", "ptcc_edit_steps"

    first = _child(folder, steps, db)
    assert first["computed"] > 0
    again = _child(folder, steps, db)
    assert again["digests"] == first["digests"]
    assert again["computed"] == 0  # every piece read from the cache

    # Same size, mtime put back: only the ctime (and the text) tell the edit.
    before = helpers.stat()
    helpers.write_text(HELPERS.replace("x + 1", "x + 2"))
    os.utime(helpers, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert helpers.stat().st_size == before.st_size
    assert helpers.stat().st_mtime_ns == before.st_mtime_ns

    edited = _child(folder, steps, db)
    fresh = _child(folder, steps, None)
    assert edited["digests"] == fresh["digests"]
    assert edited["digests"] != first["digests"]


def test_a_file_changed_within_the_racy_window_is_not_remembered(
    tmp_path: Path, real_window: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "project"
    helpers, steps = _write(folder, "ptcc_racy")
    monkeypatch.syspath_prepend(str(folder))
    module = __import__(steps)
    with CodeCache(tmp_path / "code.db") as cache:
        before = code_fingerprint(module.f, cache)
    # An edit of the same size at once: on a coarse clock it may leave every timestamp as
    # it was. Nothing read within the window was remembered, so it is read again.
    helpers.write_text(HELPERS.replace("x + 1", "x + 2"))
    with CodeCache(tmp_path / "code.db") as cache:
        after = code_fingerprint(module.f, cache)
    assert after.digest != before.digest
    rows = sqlite3.connect(tmp_path / "code.db").execute("SELECT count(*) FROM units").fetchone()
    assert rows == (0,)
    assert code_analysis._MEMORY == {}


@pytest.fixture
def cached_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Path, str]:
    """A module fingerprinted once with a cache at tmp_path/code.db (its rows written)."""
    folder = tmp_path / "project"
    _, steps = _write(folder, f"ptcc_{tmp_path.name[-12:].replace('-', '_')}")
    monkeypatch.syspath_prepend(str(folder))
    module = __import__(steps)
    db = tmp_path / "code.db"
    with CodeCache(db) as cache:
        digest = code_fingerprint(module.f, cache).digest
    assert _rows(db) >= 2  # the function, the helper
    return module, db, digest


def _rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM units").fetchone()[0])


def _all_rows_check(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = conn.execute("SELECT * FROM units").fetchall()
    assert rows
    for file, unit, sig, env, stamp, cached_ns, body, check in rows:
        assert check == code_cache._check(file, unit, sig, env, stamp, cached_ns, body)
        code_analysis.Analysis.from_json(json.loads(body))


def _poison(db: Path, *, keep_check: bool, env: str | None = None) -> None:
    """Change every row's digest (so a trusted row would change the fingerprint)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT * FROM units").fetchall()
        for file, unit, sig, old_env, stamp, cached_ns, body, check in rows:
            data = json.loads(body)
            data["digest"] = "blake3:" + "0" * 64
            new_body = json.dumps(data).encode()
            new_env = env or old_env
            if keep_check:
                check = code_cache._check(file, unit, sig, new_env, stamp, cached_ns, new_body)
            conn.execute(
                'UPDATE units SET body = ?, env = ?, "check" = ? WHERE file = ? AND unit = ?',
                (new_body, new_env, check, file, unit),
            )


def _fingerprint_again(module: Any, db: Path) -> str:
    with CodeCache(db) as cache:
        return code_fingerprint(module.f, cache).digest


def test_rows_are_used_when_nothing_changed(cached_project: tuple[Any, Path, str]) -> None:
    module, db, digest = cached_project
    _poison(db, keep_check=True)
    # A well-formed row for an unchanged file is trusted: the poisoned digest shows.
    assert _fingerprint_again(module, db) != digest


def test_an_edited_row_is_ignored_and_replaced(cached_project: tuple[Any, Path, str]) -> None:
    module, db, digest = cached_project
    _poison(db, keep_check=False)
    assert _fingerprint_again(module, db) == digest
    _all_rows_check(db)
    assert _fingerprint_again(module, db) == digest


def test_rows_of_another_version_are_ignored(cached_project: tuple[Any, Path, str]) -> None:
    module, db, digest = cached_project
    _poison(db, keep_check=True, env="pt-code2/a1/pipetrail-0.0.0/cpython-3.10.0")
    assert _fingerprint_again(module, db) == digest
    _all_rows_check(db)


def test_a_cache_of_another_schema_is_rebuilt(cached_project: tuple[Any, Path, str]) -> None:
    module, db, digest = cached_project
    _poison(db, keep_check=True)
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version={code_cache.CODE_CACHE_SCHEMA_VERSION + 1}")
    assert _fingerprint_again(module, db) == digest
    with sqlite3.connect(db) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    assert version == code_cache.CODE_CACHE_SCHEMA_VERSION
    _all_rows_check(db)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_cache_file_is_rebuilt(
    cached_project: tuple[Any, Path, str], damage: str
) -> None:
    module, db, digest = cached_project
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = db.read_bytes()
    if damage == "garbage":
        db.write_bytes(b"this is not a database" * 400)
    else:
        db.write_bytes(data[: len(data) // 2])
    assert _fingerprint_again(module, db) == digest
    _all_rows_check(db)
    assert _fingerprint_again(module, db) == digest


def test_concurrent_processes_leave_the_cache_consistent(
    tmp_path: Path, aged_projects: dict[str, Path]
) -> None:
    folder, db, modules = aged_projects["many"], tmp_path / "code.db", _MANY
    fresh = {name: _child(folder, name, None)["digests"] for name in modules}
    env = {**os.environ, "PYTHONPATH": _SRC, "PYTHONDONTWRITEBYTECODE": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(folder), name, str(db), "15"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name in [*modules, *modules]
    ]
    for proc, name in zip(procs, [*modules, *modules], strict=True):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert json.loads(out)["digests"] == fresh[name]
    _all_rows_check(db)
    assert _rows(db) == 1 + len(modules)  # the helper module's function, each module's f
    assert _child(folder, modules[0], db)["computed"] == 0
