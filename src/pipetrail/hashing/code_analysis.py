"""What a code fingerprint reads from source text, remembered while the text stays the same.

Reading a function's text, parsing it, normalizing it and walking its syntax tree for the
names it reads is most of what a code fingerprint costs, and it depends on nothing but
the text of one file. This module computes that :class:`Analysis` for one *unit* (a
function's code object, a class, a module) and remembers it:

* in this process, for as long as the file's ``stat`` signature stays the same;
* across processes, in a :class:`~pipetrail.hashing.code_cache.CodeCache` (the project's
  ``.pipetrail/cache/code.db``) when the caller gives one.

Everything that depends on the running program (the values code reads, which objects
names are bound to, the versions of the distributions it uses) is *not* remembered: the
fingerprint walk reads it live every time. So a remembered analysis can only be wrong if
a file's text changed while its signature did not, which the signature (size, mtime_ns,
ctime_ns, inode, device) and the racy rule rule out: an analysis is remembered only when
its file was last changed at least :data:`RACY_WINDOW_NS` before it was read, since a
file changed within one coarse timestamp tick may change again without a visible sign
(git's "racy clean" problem). Any doubt (a file that cannot be stat-ed, a signature that
moved while the file was read, an unreadable cache) means: analyze again.

Imports only ``pipetrail.hashing`` modules and the standard library.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import linecache
import os
import sys
import time
import tokenize
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.hashing.code_source import (
    code_text,
    module_text,
    normalize_source,
    parse_source,
    referenced_names,
)
from pipetrail.hashing.digest import digest_bytes

if TYPE_CHECKING:
    import types
    from collections.abc import Callable, Iterator

    from pipetrail.hashing.code_cache import CodeCache

__all__ = [
    "RACY_WINDOW_NS",
    "Analysis",
    "ImportStatement",
    "active_code_cache",
    "class_analysis",
    "file_signature",
    "forget_analyses",
    "function_analysis",
    "function_text_analysis",
    "import_statements",
    "module_analysis",
    "using_code_cache",
    "without_own_decorators",
]

# Coarse file systems keep 1 s (ext3, HFS+) or 2 s (FAT) timestamps; 2 s covers both.
RACY_WINDOW_NS = 2_000_000_000

# ("import", module, asname) or ("from", module, level, ((name, asname), ...)).
ImportStatement = tuple[Any, ...]


@dataclass(frozen=True)
class Analysis:
    """What one unit of code says, read from its text alone.

    Attributes:
        text: the unit's source text (a function's as ``inspect.getsource`` gives it).
        digest: the digest of its normalized source (see
            :func:`~pipetrail.hashing.code_source.normalize_source`).
        names: the dotted name chains it reads (empty for a module).
        imports: the ``import`` statements inside it (empty for a module).
    """

    text: str
    digest: str
    names: tuple[tuple[str, ...], ...] = ()
    imports: tuple[ImportStatement, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return the JSON-able form the persistent cache stores."""
        return {
            "text": self.text,
            "digest": self.digest,
            "names": [list(chain) for chain in self.names],
            "imports": [_statement_json(s) for s in self.imports],
        }

    @classmethod
    def from_json(cls, data: Any) -> Analysis:
        """Rebuild an analysis from :meth:`to_json`'s form.

        Raises:
            ValueError: ``data`` does not have that form.
        """
        try:
            text, digest = data["text"], data["digest"]
            names = tuple(tuple(chain) for chain in data["names"])
            imports = tuple(_statement_from_json(s) for s in data["imports"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an analysis: {exc}") from exc
        if not isinstance(text, str) or not isinstance(digest, str):
            raise ValueError("not an analysis: text and digest must be strings")
        if not all(isinstance(n, str) for chain in names for n in chain):
            raise ValueError("not an analysis: names must be strings")
        return cls(text, digest, names, imports)


def _statement_json(statement: ImportStatement) -> list[Any]:
    if statement[0] == "import":
        return list(statement)
    return [statement[0], statement[1], statement[2], [list(a) for a in statement[3]]]


def _statement_from_json(data: Any) -> ImportStatement:
    if data[0] == "import" and len(data) == 3:
        return ("import", str(data[1]), None if data[2] is None else str(data[2]))
    if data[0] == "from" and len(data) == 4:
        aliases = tuple((str(n), None if a is None else str(a)) for n, a in data[3])
        return ("from", None if data[1] is None else str(data[1]), int(data[2]), aliases)
    raise ValueError(f"not an import statement: {data!r}")


def import_statements(tree: ast.AST) -> tuple[ImportStatement, ...]:
    """Return the ``import`` statements inside code, in the order :func:`ast.walk` meets them."""
    found: list[ImportStatement] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(("import", alias.name, alias.asname) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            aliases = tuple((alias.name, alias.asname) for alias in node.names)
            found.append(("from", node.module, node.level, aliases))
    return tuple(found)


def without_own_decorators(tree: ast.Module) -> ast.Module:
    """Drop the decorators of the function a source defines (not of functions inside it).

    They ran once, when the function was defined: their effect is the object they made
    (covered as such: a wrapper's code, a step's options in their own key components),
    not code the function runs. Their names are not values the function reads.
    """
    if tree.body and isinstance(tree.body[0], ast.FunctionDef | ast.AsyncFunctionDef):
        tree.body[0].decorator_list = []
    return tree


def _analyze(text: str, tree: ast.AST | None) -> Analysis:
    digest = digest_bytes(normalize_source(text).encode())
    if tree is None:
        return Analysis(text, digest)
    names = tuple(tuple(chain) for chain in referenced_names(tree))
    return Analysis(text, digest, names, import_statements(tree))


def function_text_analysis(text: str) -> Analysis:
    """Analyze a function's source text (not remembered: it has no file to key on).

    Raises:
        SyntaxError: the text does not parse.
    """
    return _analyze(text, without_own_decorators(parse_source(text)))


def _function(code: types.CodeType) -> Analysis:
    return function_text_analysis(code_text(code))


def _class(cls: type) -> Analysis:
    text = inspect.getsource(cls)
    return _analyze(text, parse_source(text))


def _module(module: types.ModuleType) -> Analysis:
    return _analyze(module_text(module), None)


def function_analysis(code: types.CodeType, cache: CodeCache | None = None) -> Analysis:
    """Analyze a function's code object: its text, normalized digest, names and imports.

    Raises:
        OSError: no source text is available.
        SyntaxError: the text does not parse.
    """
    unit = f"function:{code.co_firstlineno}:{code.co_name}"
    return _remembered(code.co_filename, unit, functools.partial(_function, code), cache)


def class_analysis(cls: type, cache: CodeCache | None = None) -> Analysis:
    """Analyze a class's source (as ``inspect.getsource`` finds it).

    Raises:
        OSError: no source text is available.
        TypeError: ``cls`` is a built-in class.
        SyntaxError: the text does not parse.
    """
    module = sys.modules.get(cls.__module__)
    filename = getattr(module, "__file__", None)
    unit = f"class:{cls.__qualname__}"
    compute = functools.partial(_class, cls)
    if not isinstance(filename, str) or not filename.endswith(".py"):
        return compute()
    return _remembered(filename, unit, compute, cache)


def module_analysis(module: types.ModuleType, cache: CodeCache | None = None) -> Analysis:
    """Analyze a module's ``.py`` file (its text and normalized digest only).

    Raises:
        OSError: the module has no ``.py`` file with lines to read.
        SyntaxError: the text does not parse.
    """
    filename = getattr(module, "__file__", None)
    compute = functools.partial(_module, module)
    if not isinstance(filename, str) or not filename.endswith(".py"):
        return compute()
    return _remembered(filename, "module", compute, cache)


# -- remembering ---------------------------------------------------------------------
_ACTIVE: ContextVar[CodeCache | None] = ContextVar("pipetrail_code_cache", default=None)


@contextlib.contextmanager
def using_code_cache(cache: CodeCache | None) -> Iterator[CodeCache | None]:
    """Make ``cache`` the persistent cache of code fingerprints taken inside the block.

    A run does so while it fingerprints its steps and its pipeline, so every fingerprint
    taken then (contract checks' code included) reads and fills the project's cache.
    """
    token = _ACTIVE.set(cache)
    try:
        yield cache
    finally:
        _ACTIVE.reset(token)


def active_code_cache() -> CodeCache | None:
    """Return the cache :func:`using_code_cache` made current here, or None."""
    return _ACTIVE.get()


# (absolute file, unit) -> (file signature, analysis): this process's memory.
_MEMORY: dict[tuple[str, str], tuple[tuple[int, ...], Analysis]] = {}


def forget_analyses() -> None:
    """Forget what this process remembers (the persistent cache is left as it is)."""
    _MEMORY.clear()


def file_signature(st: os.stat_result) -> tuple[int, int, int, int, int]:
    """Return ``(size, mtime_ns, ctime_ns, inode, device)``: what identifies a file's state."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _remembered(
    filename: str,
    unit: str,
    compute: Callable[[], Analysis],
    cache: CodeCache | None,
) -> Analysis:
    if not os.path.isabs(filename):
        return compute()  # relative to some working directory: not a stable identity
    started = time.time_ns()  # before the stat: the racy rule's reference
    try:
        sig = file_signature(os.stat(filename))
    except (OSError, ValueError):
        return compute()  # no file (exec'd code, a notebook cell): nothing to key on
    key = (filename, unit)
    found = _MEMORY.get(key)
    if found is not None and found[0] == sig:
        return found[1]
    if cache is not None:
        cached = cache.get(filename, unit, sig)
        if cached is not None:
            _MEMORY[key] = (sig, cached)
            return cached
    if not _refresh_lines(filename, sig):
        return compute()  # the file moved while it was read: use it, remember nothing
    analysis = compute()
    try:
        after = file_signature(os.stat(filename))
    except (OSError, ValueError):
        return analysis
    stamp = max(sig[1], sig[2])
    if after == sig and stamp < started - RACY_WINDOW_NS:
        _MEMORY[key] = (sig, analysis)
        if cache is not None:
            cache.put(filename, unit, sig, stamp, started, analysis)
    return analysis


def _refresh_lines(filename: str, sig: tuple[int, ...]) -> bool:
    """Load ``filename`` into :mod:`linecache` as it is now; False if it moved meanwhile.

    ``linecache`` checks only a file's size and mtime, so after an edit within one
    timestamp tick it may hold the old text under the new signature. The text read here
    is the one the signature was taken for, and every reader of source (``code_text``,
    ``inspect.getsource``) then sees it.
    """
    try:
        with tokenize.open(filename) as f:
            lines = f.readlines()
        st = os.stat(filename)
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return False
    if file_signature(st) != sig:
        return False
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    linecache.cache[filename] = (st.st_size, st.st_mtime, lines, filename)
    return True
