"""The fingerprint registry: user registrations and the built-ins for library types."""

from __future__ import annotations

import collections
import functools
import random
import re
import subprocess
import sys
import types
import uuid
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier

import pipetrail
from pipetrail import Contract
from pipetrail.errors import UnhashableValueError
from pipetrail.hashing import fingerprint
from pipetrail.hashing.code import code_fingerprint
from pipetrail.hashing.fingerprint import fingerprint_obj

if TYPE_CHECKING:
    from pathlib import Path

# -- register_fingerprint -------------------------------------------------------------------


class Tokenizer:
    def __init__(self, vocab: dict[str, int], lower: bool) -> None:
        self.vocab = vocab
        self.lower = lower


class CasedTokenizer(Tokenizer):
    pass


class Other:
    def __init__(self, vocab: dict[str, int], lower: bool) -> None:
        self.vocab = vocab
        self.lower = lower


def test_unknown_type_is_refused_until_registered() -> None:
    class Local:
        def __init__(self, k: int) -> None:
            self.k = k

    with pytest.raises(UnhashableValueError, match=r"register_fingerprint\(Local, fn\)"):
        fingerprint(Local(1))
    pipetrail.register_fingerprint(Local, lambda value: {"k": value.k})
    assert fingerprint(Local(1)) == fingerprint(Local(1))
    assert fingerprint(Local(1)) != fingerprint(Local(2))


def test_registered_fingerprint_is_tagged_with_the_values_class() -> None:
    pipetrail.register_fingerprint(Tokenizer, lambda t: {"vocab": t.vocab, "lower": t.lower})
    pipetrail.register_fingerprint(Other, lambda t: {"vocab": t.vocab, "lower": t.lower})
    base = Tokenizer({"a": 1}, lower=True)
    assert fingerprint(base) != fingerprint(Tokenizer({"a": 1}, lower=False))
    assert fingerprint(base) != fingerprint(Other({"a": 1}, lower=True))
    # Subclasses use the base's function, tagged with their own class.
    assert fingerprint(CasedTokenizer({"a": 1}, lower=True)) != fingerprint(base)
    assert fingerprint_obj(base)["$type"] == f"{__name__}.Tokenizer"


def test_a_user_registration_wins_over_a_builtin() -> None:
    class Frame(pd.DataFrame):
        pass

    pipetrail.register_fingerprint(Frame, lambda frame: list(frame.columns))
    assert fingerprint_obj(Frame({"a": [1]}))["$type"].endswith("Frame")
    assert fingerprint(Frame({"a": [1]})) == fingerprint(Frame({"a": [2]}))


def test_register_fingerprint_refuses_non_types() -> None:
    with pytest.raises(TypeError, match="needs a class"):
        pipetrail.register_fingerprint("Tokenizer", lambda t: t)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="needs a function"):
        pipetrail.register_fingerprint(Tokenizer, 3)  # type: ignore[arg-type]


def test_a_registered_function_may_refuse_a_value() -> None:
    class Conn:
        pass

    def refuse(value: Conn) -> Any:
        raise UnhashableValueError("a live connection has no state to fingerprint")

    pipetrail.register_fingerprint(Conn, refuse)
    with pytest.raises(UnhashableValueError, match="live connection"):
        fingerprint(Conn())


def test_a_failing_registered_function_is_reported_as_unhashable() -> None:
    class Broken:
        pass

    pipetrail.register_fingerprint(Broken, lambda value: value.missing)
    with pytest.raises(UnhashableValueError, match=r"Broken failed \(AttributeError: "):
        fingerprint(Broken())


def test_registered_state_may_hold_functions_inside_code_only() -> None:
    class Callback:
        def __init__(self, fn: Any) -> None:
            self.fn = fn

    def double(x: int) -> int:
        return 2 * x

    pipetrail.register_fingerprint(Callback, lambda cb: {"fn": cb.fn})
    with pytest.raises(UnhashableValueError, match="function"):
        fingerprint(Callback(double))  # a parameter: no code fingerprint to cover it
    callback = Callback(double)

    def step_body(x: int) -> int:
        return callback.fn(x)

    found = code_fingerprint(step_body)
    assert found.unhashable == ()
    assert any(name.endswith("double") for name in found.parts)


# -- built-ins: plain Python ----------------------------------------------------------------


def test_compiled_regex_by_pattern_and_flags() -> None:
    base = re.compile("a+")
    assert fingerprint(base) == fingerprint(re.compile("a+"))
    assert fingerprint(base) != fingerprint(re.compile("a*"))
    assert fingerprint(base) != fingerprint(re.compile("a+", re.IGNORECASE))
    assert fingerprint(base) != fingerprint(re.compile(b"a+"))


def test_small_stdlib_types() -> None:
    assert fingerprint(range(3)) != fingerprint(range(4))
    assert fingerprint(range(3)) != fingerprint([0, 1, 2])
    space = types.SimpleNamespace(lr=0.1)
    assert fingerprint(space) != fingerprint(types.SimpleNamespace(lr=0.2))
    assert fingerprint(space) != fingerprint({"lr": 0.1})
    as_list = collections.defaultdict(list, {"a": [1]})
    assert fingerprint(as_list) != fingerprint(collections.defaultdict(set, {"a": [1]}))
    assert fingerprint(as_list) != fingerprint({"a": [1]})
    assert fingerprint(random.Random(1)) != fingerprint(random.Random(2))
    assert fingerprint(random.Random(1)) == fingerprint(random.Random(1))
    with pytest.raises(UnhashableValueError, match="operating system"):
        fingerprint(random.SystemRandom())


def test_partial_outside_code_cannot_cover_its_function() -> None:
    with pytest.raises(UnhashableValueError, match="cannot be fingerprinted"):
        fingerprint(functools.partial(max, 1))


# -- built-ins: libraries -------------------------------------------------------------------


def test_numpy_generators_by_state() -> None:
    assert fingerprint(np.random.default_rng(0)) == fingerprint(np.random.default_rng(0))
    assert fingerprint(np.random.default_rng(0)) != fingerprint(np.random.default_rng(1))
    assert fingerprint(np.random.RandomState(0)) != fingerprint(np.random.RandomState(1))
    assert fingerprint(np.dtype("float64")) != fingerprint(np.dtype("float32"))


def test_pandas_frames_by_values_dtypes_columns_and_index() -> None:
    base = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert fingerprint(base) == fingerprint(base.copy())
    assert fingerprint(base) != fingerprint(base.assign(a=[1, 3]))
    assert fingerprint(base) != fingerprint(base.astype({"a": "float64"}))
    assert fingerprint(base) != fingerprint(base.rename(columns={"b": "c"}))
    assert fingerprint(base) != fingerprint(base.set_axis([5, 6]))
    series = pd.Series([1, 2], name="a")
    assert fingerprint(series) != fingerprint(series.rename("b"))
    assert fingerprint(series) != fingerprint(pd.Series([1, 3], name="a"))
    assert fingerprint(pd.Index([1, 2])) != fingerprint(pd.Index([1, 3]))
    assert fingerprint(pd.NA) == fingerprint(pd.NA)


def test_pandas_frame_arrow_cannot_read_is_refused() -> None:
    with pytest.raises(UnhashableValueError, match="DataFrame"):
        fingerprint(pd.DataFrame({"mixed": [1, "a"]}))


def test_polars_and_pyarrow_tables_by_content() -> None:
    frame = pl.DataFrame({"a": [1, 2]})
    assert fingerprint(frame) == fingerprint(pl.DataFrame({"a": [1, 2]}))
    assert fingerprint(frame) != fingerprint(pl.DataFrame({"a": [1, 3]}))
    assert fingerprint(frame) != fingerprint(frame.cast({"a": pl.Int32}))
    assert fingerprint(frame["a"]) != fingerprint(frame["a"].alias("b"))
    table = pa.table({"a": [1, 2]})
    assert fingerprint(table) != fingerprint(pa.table({"a": [1, 3]}))
    assert fingerprint(table.schema) != fingerprint(pa.schema([("a", pa.int32())]))
    assert fingerprint(pa.array([1])) != fingerprint(pa.array([2]))
    assert fingerprint(pa.int64()) != fingerprint(pa.int32())


def test_polars_expressions_by_plan() -> None:
    base = pl.col("a") * 2
    assert fingerprint(base) == fingerprint(pl.col("a") * 2)
    assert fingerprint(base) != fingerprint(pl.col("a") * 3)
    assert fingerprint(pl.LazyFrame({"a": [1]}).select(base)) != fingerprint(
        pl.LazyFrame({"a": [1]}).select(pl.col("a"))
    )
    assert fingerprint(pl.Float64()) != fingerprint(pl.Int64())


def _shout(text: str) -> str:
    return text.upper() + "!"


@pytest.mark.filterwarnings("ignore::polars.exceptions.PolarsInefficientMapWarning")
def test_polars_expression_holding_a_python_function_is_refused() -> None:
    # The plan names the function (a pickle by reference), not its code.
    with pytest.raises(UnhashableValueError, match="Python function"):
        fingerprint(pl.col("a").map_elements(_shout, return_dtype=pl.String))


def test_sklearn_estimators_by_params_and_fitted_state() -> None:
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 0, 1, 1])
    base = LogisticRegression(C=1.0)
    assert fingerprint(base) == fingerprint(LogisticRegression(C=1.0))
    assert fingerprint(base) != fingerprint(LogisticRegression(C=2.0))
    fitted = LogisticRegression(C=1.0).fit(x, y)
    assert fingerprint(fitted) != fingerprint(base)
    assert fingerprint(fitted) != fingerprint(LogisticRegression(C=1.0).fit(x, 1 - y))
    frame = pd.DataFrame({"f": x[:, 0]})
    named = LogisticRegression().fit(frame, y)  # feature_names_in_ is an object array
    assert fingerprint(named) != fingerprint(
        LogisticRegression().fit(frame.rename(columns=str.upper), y)
    )
    nested = make_pipeline(StandardScaler(), LogisticRegression(C=1.0))
    assert fingerprint(nested) != fingerprint(
        make_pipeline(StandardScaler(), LogisticRegression(C=3.0))
    )
    tree = DecisionTreeClassifier(random_state=0).fit(x, y)
    assert fingerprint(tree) != fingerprint(DecisionTreeClassifier(random_state=0).fit(x, 1 - y))


def test_contracts_by_their_contract_digest() -> None:
    import pandera.pandas as pa_pandas

    def contract(dtype: type) -> Contract:
        return Contract(pa_pandas.DataFrameSchema({"a": pa_pandas.Column(dtype)}), rows=(1, None))

    assert fingerprint(contract(float)) == fingerprint(contract(float))
    assert fingerprint(contract(float)) != fingerprint(contract(int))
    assert fingerprint(Contract(rows=(1, None))) != fingerprint(Contract(rows=(2, None)))


# -- torch, through a stand-in package (torch is not a dependency of the test suite) --------

FAKE_TORCH = """
import numpy as _np

uint8 = "uint8"


class Tensor:
    def __init__(self, values, dtype="float32"):
        self._array = _np.asarray(values, dtype=dtype)
        self.dtype = dtype
        self.shape = self._array.shape

    def detach(self):
        return self

    def cpu(self):
        return self

    def contiguous(self):
        return self

    def reshape(self, *shape):
        return Tensor(self._array.reshape(*shape), self.dtype)

    def numel(self):
        return self._array.size

    def view(self, dtype):
        return Tensor(self._array.view(_np.uint8), "uint8")

    def numpy(self):
        return self._array
"""

FAKE_MODULE = """
class Module:
    def __init__(self):
        self.training = True
        self._parameters = {}

    def named_modules(self):
        return [("", self)]

    def state_dict(self):
        return dict(self._parameters)
"""


@pytest.fixture
def fake_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    root = tmp_path / "fake"
    (root / "torch" / "nn" / "modules").mkdir(parents=True)
    (root / "torch" / "__init__.py").write_text(FAKE_TORCH)
    (root / "torch" / "nn" / "__init__.py").write_text("")
    (root / "torch" / "nn" / "modules" / "__init__.py").write_text("")
    (root / "torch" / "nn" / "modules" / "module.py").write_text(FAKE_MODULE)
    for name in [n for n in sys.modules if n == "torch" or n.startswith("torch.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(root))
    import torch  # the stand-in
    import torch.nn.modules.module

    yield torch
    for name in [n for n in sys.modules if n == "torch" or n.startswith("torch.")]:
        del sys.modules[name]


def test_torch_modules_by_state_dict_and_attributes(fake_torch: Any) -> None:
    module_type = sys.modules["torch.nn.modules.module"].Module

    class Linear(module_type):  # type: ignore[misc, valid-type]
        def __init__(self, weight: list[float], scale: int) -> None:
            super().__init__()
            self._parameters = {"weight": fake_torch.Tensor(weight)}
            self.scale = scale

    base = Linear([1.0, 2.0], scale=1)
    assert fingerprint(base) == fingerprint(Linear([1.0, 2.0], scale=1))
    assert fingerprint(base) != fingerprint(Linear([1.0, 2.5], scale=1))
    assert fingerprint(base) != fingerprint(Linear([1.0, 2.0], scale=2))
    evaluating = Linear([1.0, 2.0], scale=1)
    evaluating.training = False
    assert fingerprint(base) != fingerprint(evaluating)
    assert fingerprint(fake_torch.Tensor([1, 2])) != fingerprint(fake_torch.Tensor([1, 3]))


# -- import cost ----------------------------------------------------------------------------


def test_importing_pipetrail_imports_no_data_library() -> None:
    code = (
        "import sys, pipetrail\n"
        "from pipetrail.hashing import fingerprint\n"
        "fingerprint({'a': [1, 2.0, 'x']})\n"
        "heavy = {'pandas', 'numpy', 'polars', 'pandera', 'sklearn', 'pyarrow', 'pydantic'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"


def test_registry_names_match_the_installed_libraries() -> None:
    # A renamed class would silently fall out of the table: every built-in must resolve.
    from pipetrail.hashing.fingerprint_types import handler_for

    for value in (
        np.zeros(1), np.float32(1), np.dtype("int8"), np.random.default_rng(0),
        np.random.RandomState(0), pd.DataFrame(), pd.Series(dtype="int64"), pd.Index([]),
        pd.NA, pl.DataFrame(), pl.Series(), pl.col("a"), pl.LazyFrame(), pl.Int8(),
        pa.table({}), pa.record_batch({"a": [1]}), pa.array([1]), pa.chunked_array([[1]]),
        pa.schema([]), pa.field("a", pa.int8()), pa.int8(), LogisticRegression(),
    ):  # fmt: skip
        assert handler_for(type(value)) is not None, type(value)
    assert handler_for(type(uuid.uuid4())) is None
