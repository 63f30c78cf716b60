"""Property: a code fingerprint changes when behaviour can change, and only then.

Hypothesis generates a small project: a helpers module (constants and helper functions)
and a step module with closures made by factories (two from one factory, one binding a
default value), a ``functools.partial``, a decorated
helper, a callable object, a callable dataclass and a ``@step`` that composes some of
them. Every number in it is a parameter. Two kinds of edits:

* a *cosmetic* edit (comments, blank lines, docstrings, spacing, redundant parentheses)
  must keep the digest;
* a *value* edit (one number changed anywhere) that changes what the step returns on
  sample inputs must change the digest.

Each version is written to its own folder and imported under the same module names, so
the only difference between two fingerprints is the text of the project.
"""

from __future__ import annotations

import importlib
import sys
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipetrail.hashing.code import code_fingerprint

if TYPE_CHECKING:
    from pathlib import Path

    import pytest

COMPONENTS = (
    "H.h0", "H.h1", "H.h2", "CLOSE", "CLOSE2", "BOUND", "PART", "decorated", "MUL", "ADD",
    "H.K0",
)  # fmt: skip
SAMPLES = (-3, 0, 1, 2, 7)
# The numbers each component's behaviour depends on.
DEPENDS = {
    "H.h0": ("h0",), "H.h1": ("h1", "K1"), "H.h2": ("h2",), "CLOSE": ("close",),
    "CLOSE2": ("close2",), "BOUND": ("bound",), "PART": ("part",),
    "decorated": ("deco", "decorated"), "MUL": ("mul_init", "mul_call"), "ADD": ("add",),
    "H.K0": ("K0",),
}  # fmt: skip
PARAMS = (
    "K0", "K1", "h0", "h1", "h2", "close", "close2", "bound", "part", "deco", "decorated",
    "mul_init", "mul_call", "add",
)  # fmt: skip


@dataclass(frozen=True)
class Style:
    """Ways to write the same code."""

    comments: bool
    docstrings: bool
    blank_lines: int
    spaced: bool
    parens: bool

    def op(self, left: str, op: str, right: str) -> str:
        text = f"{left} {op} {right}" if self.spaced else f"{left}{op}{right}"
        return f"({text})" if self.parens else text

    def doc(self, text: str) -> str:
        return f'    """{text}"""\n' if self.docstrings else ""

    def note(self, text: str) -> str:
        return f"  # {text}" if self.comments else ""

    def gap(self) -> str:
        return "\n" * self.blank_lines


@dataclass(frozen=True)
class Model:
    params: dict[str, int]
    ops: dict[str, str]
    uses: tuple[str, ...]

    def helpers(self, style: Style) -> str:
        p, o = self.params, self.ops
        out = [f"K0 = {p['K0']}{style.note('a constant')}\n", f"K1 = {p['K1']}\n", style.gap()]
        for i, right in enumerate((str(p["h0"]), "K1", str(p["h2"]))):
            name = f"h{i}"
            right_text = right if name != "h1" else f"{right} + {p['h1']}"
            out.append(
                f"\ndef {name}(x):\n{style.doc('A helper.')}"
                f"    return {style.op('x', o[name], right_text)}{style.note(name)}\n" + style.gap()
            )
        return "".join(out)

    def main(self, style: Style, helpers: str) -> str:
        p = self.params
        body = "x"
        for use in self.uses:
            body = f"{use} + {body}" if use == "H.K0" else f"{use}({body})"
        return MAIN.format(
            helpers=helpers,
            gap=style.gap(),
            doc_make=style.doc("A factory."),
            doc_step=style.doc("The step."),
            inner=style.op("x", "+", "k"),
            scaled=style.op("x", "*", "k") + style.note("scaled"),
            deco=p["deco"],
            decorated=p["decorated"],
            mul=style.op("x", "*", "self.k"),
            mul_call=p["mul_call"],
            close=p["close"],
            close_note=style.note("a closure"),
            close2=p["close2"],
            bound=p["bound"],
            part=p["part"],
            mul_init=p["mul_init"],
            add=p["add"],
            body=body,
        )


MAIN = """\
import dataclasses
import functools

import {helpers} as H
from pipetrail import step
{gap}

def make(k):
{doc_make}    def inner(x):
        return {inner}

    return inner


def make_bound(k):
    def inner(x, k=k):
        return x - k

    return inner


def scale(x, k):
    return {scaled}


def deco(fn):
    @functools.wraps(fn)
    def wrapper(x):
        return fn(x) + {deco}

    return wrapper


@deco
def decorated(x):
    return x - {decorated}


class Mul:
    def __init__(self, k):
        self.k = k

    def __call__(self, x):
        return {mul} + {mul_call}


@dataclasses.dataclass(frozen=True)
class Add:
    k: int

    def __call__(self, x):
        return x + self.k
{gap}

CLOSE = make({close}){close_note}
CLOSE2 = make({close2})
BOUND = make_bound({bound})
PART = functools.partial(scale, k={part})
MUL = Mul({mul_init})
ADD = Add({add})


@step
def f(x):
{doc_step}    return {body}
"""


@st.composite
def models(draw: st.DrawFn) -> Model:
    params = {name: draw(st.integers(-4, 9)) for name in PARAMS}
    ops = {name: draw(st.sampled_from(("+", "-", "*"))) for name in ("h0", "h1", "h2")}
    uses = tuple(draw(st.lists(st.sampled_from(COMPONENTS), min_size=1, max_size=6)))
    return Model(params, ops, uses)


styles = st.builds(
    Style,
    comments=st.booleans(),
    docstrings=st.booleans(),
    blank_lines=st.integers(0, 2),
    spaced=st.booleans(),
    parens=st.booleans(),
)


class Loader:
    """Writes a version of the project to a new folder and imports it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.prefix = f"ptprop_{uuid.uuid4().hex[:10]}"
        self.count = 0

    def load(self, model: Model, style: Style) -> tuple[str, tuple[Any, ...]]:
        helpers, main = f"{self.prefix}_helpers", f"{self.prefix}_main"
        folder = self.root / f"v{self.count}"
        self.count += 1
        folder.mkdir(parents=True)
        (folder / f"{helpers}.py").write_text(model.helpers(style))
        (folder / f"{main}.py").write_text(model.main(style, helpers))
        self.forget()
        sys.path.insert(0, str(folder))
        try:
            importlib.invalidate_caches()
            module = importlib.import_module(main)
            found = code_fingerprint(module.f)
            assert found.unhashable == (), found.unhashable
            outputs = tuple(module.f(x) for x in SAMPLES)
        finally:
            sys.path.remove(str(folder))
            self.forget()
        return found.digest, outputs

    def forget(self) -> None:
        for name in [name for name in sys.modules if name.startswith(self.prefix)]:
            del sys.modules[name]


FAST = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)


@FAST
@given(model=models(), first=styles, second=styles)
def test_cosmetic_edits_keep_the_digest(
    tmp_path_factory: pytest.TempPathFactory, model: Model, first: Style, second: Style
) -> None:
    loader = Loader(tmp_path_factory.mktemp("cosmetic"))
    digest, outputs = loader.load(model, first)
    again, same_outputs = loader.load(model, second)
    assert same_outputs == outputs
    assert again == digest


@FAST
@given(model=models(), style=styles, delta=st.integers(1, 5), new_op=st.sampled_from("+-*"))
def test_value_edits_that_change_behaviour_change_the_digest(
    tmp_path_factory: pytest.TempPathFactory,
    model: Model,
    style: Style,
    delta: int,
    new_op: str,
) -> None:
    loader = Loader(tmp_path_factory.mktemp("value"))
    digest, outputs = loader.load(model, style)
    # Edit, one at a time, every number and operator a component the step uses reads.
    used = sorted({name for use in model.uses for name in DEPENDS[use]})
    edits = [
        Model({**model.params, n: model.params[n] + delta}, model.ops, model.uses) for n in used
    ]
    edits += [
        Model(model.params, {**model.ops, n: new_op}, model.uses)
        for n in used
        if n in model.ops and model.ops[n] != new_op
    ]
    for edited in edits:
        changed, changed_outputs = loader.load(edited, style)
        if changed_outputs != outputs:
            assert changed != digest, (edited, model)
