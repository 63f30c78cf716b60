"""Shared helpers for hashing tests: small projects written to ``tmp_path`` and imported.

Every test here runs with the persistent code-analysis cache on (a fresh one per test),
with nothing remembered in memory and no racy window: every analysis a fingerprint needs
is read from, or written to, the SQLite cache, so each cache-honesty test below also
shows that the cache's key (the file's signature) is enough. The racy window has tests of
its own (``test_code_cache.py``).
"""

from __future__ import annotations

import importlib
import itertools
import sys
import textwrap
import uuid
from typing import TYPE_CHECKING

import pytest

# The fingerprints of contracts and pandera schemas are registered by the contracts layer
# (hashing may not import it); a run imports it before it fingerprints any step.
import pipetrail.contracts.fingerprint  # noqa: F401
from pipetrail.hashing import code_analysis, code_cache
from pipetrail.hashing.code import CodeFingerprint, code_fingerprint

if TYPE_CHECKING:
    import types
    from collections.abc import Iterator
    from pathlib import Path


class Project:
    """Writes versions of a tiny project to disk and imports them.

    Sources name sibling modules as ``{mod}``, ``{helpers}``, ``{other}`` ...: the braces
    are replaced by the module's unique name (nothing else in the sources uses braces).
    """

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.monkeypatch = monkeypatch
        self.prefix = f"ptcode_{uuid.uuid4().hex[:12]}"
        self.names: set[str] = set()
        self._versions = itertools.count()

    def name(self, base: str) -> str:
        return f"{self.prefix}_{base}"

    def write(self, files: dict[str, str]) -> Path:
        folder = self.root / f"v{next(self._versions)}"
        folder.mkdir(parents=True)
        for base, text in files.items():
            source = textwrap.dedent(text)
            for other in files:
                source = source.replace("{" + other + "}", self.name(other))
            (folder / f"{self.name(base)}.py").write_text(source, encoding="utf-8")
        return folder

    def load(self, files: dict[str, str], main: str = "mod") -> types.ModuleType:
        """Write ``files`` as a new version and import it; earlier versions are forgotten."""
        folder = self.write(files)
        self.forget()
        self.monkeypatch.syspath_prepend(str(folder))
        importlib.invalidate_caches()
        for base in files:
            self.names.add(self.name(base))
        return importlib.import_module(self.name(main))

    def fingerprint(
        self, files: dict[str, str], func: str = "f", main: str = "mod"
    ) -> CodeFingerprint:
        module = self.load(files, main)
        return code_fingerprint(getattr(module, func))

    def load_tree(self, files: dict[str, str], main: str) -> types.ModuleType:
        """Write files at relative paths (``{pkg}`` in paths and sources is replaced)."""
        folder = self.root / f"v{next(self._versions)}"
        for relative, text in files.items():
            path = folder / self.substitute(relative)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(self.substitute(textwrap.dedent(text)), encoding="utf-8")
        self.forget()
        self.monkeypatch.syspath_prepend(str(folder))
        importlib.invalidate_caches()
        return importlib.import_module(self.substitute(main))

    def substitute(self, text: str) -> str:
        for base in ("pkg", "mod", "helpers", "broken", "absent"):
            text = text.replace("{" + base + "}", self.name(base))
        return text

    def forget(self) -> None:
        for name in [name for name in sys.modules if name.startswith(self.prefix)]:
            del sys.modules[name]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    made = Project(tmp_path / "project", monkeypatch)
    yield made
    made.forget()


class _NoMemory(dict):  # type: ignore[type-arg]
    """A process memory that remembers nothing: every lookup goes to the SQLite cache."""

    def __setitem__(self, key: object, value: object) -> None:
        return None


@pytest.fixture(autouse=True)
def persistent_code_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[code_cache.CodeCache]:
    """Fingerprints in the test read and fill a fresh SQLite code cache, and only it."""
    monkeypatch.setattr(code_analysis, "_MEMORY", _NoMemory())
    monkeypatch.setattr(code_analysis, "RACY_WINDOW_NS", -1)
    monkeypatch.setattr(code_cache, "RACY_WINDOW_NS", -1)
    monkeypatch.setattr(code_cache, "_PENDING_LIMIT", 1)  # written at once, read back
    with (
        code_cache.CodeCache(tmp_path / "code-cache" / "code.db") as cache,
        code_analysis.using_code_cache(cache),
    ):
        yield cache
