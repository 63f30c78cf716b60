"""Source text read straight from a code object's file, as inspect would give it."""

from __future__ import annotations

import functools
import inspect
import textwrap
import types
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.hashing.code import code_fingerprint
from pipetrail.hashing.code_source import code_text, module_text

if TYPE_CHECKING:
    from pathlib import Path

MODULE = textwrap.dedent(
    '''
    import functools


    def deco(func):
        @functools.wraps(func)
        def wrapper(*args):
            return func(*args)

        return wrapper


    @deco
    @functools.lru_cache
    def decorated(x):
        return x + 1


    def outer(k):
        def inner(x, k=k):
            return x * k

        return inner


    square = lambda x: x * x  # noqa: E731


    class Thing:
        def method(self, y):
            """Doc."""
            return y - 1

        async def later(self):
            return 2
    '''
)


def _load(tmp_path: Path) -> types.ModuleType:
    path = tmp_path / "textmod.py"
    path.write_text(MODULE)
    module = types.ModuleType("textmod")
    module.__file__ = str(path)
    exec(compile(MODULE, str(path), "exec"), module.__dict__)  # noqa: S102 - test module
    return module


def _functions(module: Any) -> list[Any]:
    return [
        module.deco,
        inspect.unwrap(module.decorated),
        module.decorated,  # the wrapper deco made
        module.outer,
        module.outer(3),
        module.square,
        module.Thing.method,
        module.Thing.later,
    ]


def test_code_text_is_what_inspect_gives(tmp_path: Path) -> None:
    module = _load(tmp_path)
    for func in _functions(module):
        code = func.__code__
        assert code_text(code) == inspect.getsource(code), func
    assert module_text(module) == MODULE


def test_code_text_reads_a_file_edited_since_it_was_read(tmp_path: Path) -> None:
    module = _load(tmp_path)
    before = code_text(module.outer.__code__)
    (tmp_path / "textmod.py").write_text(MODULE.replace("x * k", "x * k + 0"))
    assert code_text(module.outer.__code__) != before


def test_code_without_a_file_has_no_text() -> None:
    namespace: dict[str, Any] = {}
    exec("def made(x):\n    return x\n", namespace)  # noqa: S102 - code with no file
    with pytest.raises(OSError, match="no source lines"):
        code_text(namespace["made"].__code__)
    # The fingerprint still covers it (by its code object).
    assert code_fingerprint(namespace["made"]).parts


def test_fingerprints_do_not_walk_every_loaded_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _load(tmp_path)
    expected = code_fingerprint(module.outer(3))

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("inspect.getmodule walks every loaded module")

    monkeypatch.setattr(inspect, "getmodule", refuse)
    assert code_fingerprint(module.outer(3)) == expected
    assert code_fingerprint(functools.partial(module.outer(2), 1)) is not None
