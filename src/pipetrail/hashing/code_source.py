"""Reading code as text: normalized source, the names code reads, code-object digests.

Used by :mod:`pipetrail.hashing.code`. Pure functions over source text, ASTs and code
objects; imports nothing internal but the digest helpers.
"""

from __future__ import annotations

import ast
import inspect
import linecache
import re
import sys
import textwrap
import threading
import types
from typing import Any

from pipetrail.hashing.digest import digest_value

__all__ = [
    "code_names",
    "code_object_digest",
    "code_text",
    "module_text",
    "normalize_source",
    "parse_source",
    "referenced_names",
]

# CPython 3.11 keeps the recursion depth of the C-to-Python AST conversion in state the
# threads share: two threads parsing at once can fail with "SystemError: AST constructor
# recursion depth mismatch" (python/cpython#106905). Runs in threads of one process (a
# sweep's concurrent points, a server) fingerprint code at the same time, so every parse
# here takes this lock.
_PARSE_LOCK = threading.Lock()


def parse_source(source: str) -> ast.Module:
    """``ast.parse`` of ``source`` dedented, one thread at a time (see ``_PARSE_LOCK``)."""
    text = textwrap.dedent(source)
    with _PARSE_LOCK:
        return ast.parse(text)


# Where a function's text starts, looking back from its code object's first line (the
# same rule inspect.findsource applies to code objects).
_BLOCK_START = re.compile(r"^(\s*def\s)|(\s*async\s+def\s)|(.*(?<!\w)lambda(:|\s))|^(\s*@)")


def _lines(filename: str) -> list[str]:
    linecache.checkcache(filename)  # a file edited since it was cached is read again
    lines = linecache.getlines(filename)
    if not lines:
        raise OSError(f"no source lines for {filename!r}")
    return lines


def code_text(code: types.CodeType) -> str:
    """Return the source text of a code object, as ``inspect.getsource`` gives it.

    Read straight from the code object's file through :mod:`linecache`:
    ``inspect.getsource`` first looks for the module holding the file, a walk over every
    loaded module (``inspect.getmodule``) that costs milliseconds per process.

    Raises:
        OSError: no source text is available (code made by ``exec``, a REPL line).
    """
    lines = _lines(code.co_filename)
    start = code.co_firstlineno - 1
    if not 0 <= start < len(lines):
        raise OSError(f"line {code.co_firstlineno} is not in {code.co_filename!r}")
    while start > 0 and not _BLOCK_START.match(lines[start]):
        start -= 1
    return "".join(inspect.getblock(lines[start:]))


def module_text(module: types.ModuleType) -> str:
    """Return a module's source text (its ``.py`` file), like ``inspect.getsource``.

    Raises:
        OSError: the module has no ``.py`` file with lines to read.
    """
    filename = getattr(module, "__file__", None)
    if not isinstance(filename, str) or not filename.endswith(".py"):
        raise OSError(f"module {module.__name__!r} has no .py file")
    return "".join(_lines(filename))


class _Strip(ast.NodeTransformer):
    """Remove docstrings and decorators; what remains is the code's meaning."""

    def _strip_doc(self, node: Any) -> Any:
        body = node.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> Any:
        node.decorator_list = []
        self.generic_visit(node)
        return self._strip_doc(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> Any:
        node.decorator_list = []
        self.generic_visit(node)
        return self._strip_doc(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        self.generic_visit(node)
        return self._strip_doc(node)

    def visit_Module(self, node: ast.Module) -> Any:
        self.generic_visit(node)
        return self._strip_doc(node)


def normalize_source(source: str) -> str:
    """Return a formatting-independent text of Python source (AST dump, no docstrings)."""
    tree = _Strip().visit(parse_source(source))
    return ast.dump(tree, annotate_fields=False, include_attributes=False)


def referenced_names(tree: ast.AST) -> list[list[str]]:
    """Return dotted name chains read by the code (``a.b.c`` -> ``["a", "b", "c"]``)."""
    chains: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    assigned: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            assigned.add(node.id)
        elif isinstance(node, ast.arg):
            assigned.add(node.arg)
    # Names that head an attribute chain are covered by the chain (``mod.f`` covers only
    # ``f``), so they must not also count on their own (that would cover all of ``mod``).
    chain_heads: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            inner: ast.AST = node.value
            while isinstance(inner, ast.Attribute):
                chain_heads.add(id(inner))
                inner = inner.value
            chain_heads.add(id(inner))
    for node in ast.walk(tree):
        chain: list[str] = []
        cur: ast.AST = node
        if id(node) in chain_heads:
            continue
        if isinstance(node, ast.Attribute):
            while isinstance(cur, ast.Attribute):
                chain.append(cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name):
                chain.append(cur.id)
                chain.reverse()
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            chain = [node.id]
        if chain and chain[0] not in assigned:
            key = tuple(chain)
            if key not in seen:
                seen.add(key)
                chains.append(chain)
    return chains


def code_object_digest(code: types.CodeType) -> str:
    """Return a digest of a code object (for functions with no source: REPL, ``exec``).

    Stable for one Python ``major.minor``, which is part of the digest.
    """
    consts = []
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            consts.append(code_object_digest(const))
        else:
            consts.append(repr(const))
    return digest_value(
        {
            "code": code.co_code.hex(),
            "names": list(code.co_names),
            "consts": consts,
            "python": f"{sys.version_info[0]}.{sys.version_info[1]}",
        }
    )


def code_names(code: types.CodeType) -> list[str]:
    """Return the global and attribute names a code object reads, nested code included."""
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names.extend(name for name in code_names(const) if name not in names)
    return names
