"""What code can reach is covered or named: objects, callables, wrappers, imports.

Each test writes versions of a small project module (see ``conftest.Project``) and checks
that the code fingerprint changes exactly when what the code does can change, and that
anything it cannot cover is reported by name instead of being covered by a version.
"""

from __future__ import annotations

import importlib.metadata
from typing import TYPE_CHECKING

import pytest

from pipetrail.hashing.code import code_fingerprint

if TYPE_CHECKING:
    from tests.unit.hashing.conftest import Project


def _one_global(project: Project, setup: str, value: str, body: str) -> tuple[str, tuple[str, ...]]:
    source = f"{setup}\n\nVALUE = {value}\n\n\ndef f(x):\n    return {body}\n"
    found = project.fingerprint({"mod": source})
    return found.digest, found.unhashable


# -- callable objects are values: covered by state, never by a version alone ---------------

PANDERA = "import pandera.pandas as pa"


def test_pandera_schema_used_in_the_body_is_covered_by_its_columns(project: Project) -> None:
    # A DataFrameSchema is callable (schema(df) validates): it used to be covered by the
    # pandera version only, so changing a column's dtype served stale results.
    as_float, reasons = _one_global(
        project, PANDERA, 'pa.DataFrameSchema({"a": pa.Column(float)})', "VALUE(x)"
    )
    assert reasons == ()
    as_int, _ = _one_global(
        project, PANDERA, 'pa.DataFrameSchema({"a": pa.Column(int)})', "VALUE(x)"
    )
    assert as_int != as_float
    checked, _ = _one_global(
        project, PANDERA, 'pa.DataFrameSchema({"a": pa.Column(float, pa.Check.ge(0))})', "VALUE(x)"
    )
    assert checked != as_float
    again, _ = _one_global(
        project, PANDERA, 'pa.DataFrameSchema({"a": pa.Column(float)})', "VALUE(x)"
    )
    assert again == as_float


def test_pandera_custom_check_code_is_covered(project: Project) -> None:
    setup = f"{PANDERA}\n\n\ndef positive(s):\n    return s > LIMIT\n"
    value = 'pa.DataFrameSchema({"a": pa.Column(float, pa.Check(positive))})'
    base, reasons = _one_global(project, setup.replace("LIMIT", "0"), value, "VALUE(x)")
    assert reasons == ()
    changed, _ = _one_global(project, setup.replace("LIMIT", "1"), value, "VALUE(x)")
    assert changed != base


def test_a_contract_whose_check_reads_the_contract_terminates(project: Project) -> None:
    source = """
        import pandera.pandas as pa

        from pipetrail import Contract


        def above_minimum(s):
            return s >= RAW.rows[0] - LIMIT


        SCHEMA = pa.DataFrameSchema({"a": pa.Column(float, pa.Check(above_minimum))})
        RAW = Contract(SCHEMA, rows=(1, None))


        def f(x):
            return RAW
    """
    base = project.fingerprint({"mod": source.replace("LIMIT", "1")})
    assert base.unhashable == ()
    assert project.fingerprint({"mod": source.replace("LIMIT", "2")}).digest != base.digest


def test_pandera_polars_schema_is_covered(project: Project) -> None:
    setup = "import pandera.polars as pa\nimport polars as pl"
    base, reasons = _one_global(
        project, setup, 'pa.DataFrameSchema({"a": pa.Column(pl.Float64)})', "VALUE.validate(x)"
    )
    assert reasons == ()
    changed, _ = _one_global(
        project, setup, 'pa.DataFrameSchema({"a": pa.Column(pl.Int64)})', "VALUE.validate(x)"
    )
    assert changed != base


def test_pandera_columns_and_checks_are_covered(project: Project) -> None:
    column, reasons = _one_global(project, PANDERA, "pa.Column(float, nullable=False)", "VALUE")
    assert reasons == ()
    assert _one_global(project, PANDERA, "pa.Column(float, nullable=True)", "VALUE")[0] != column
    check, reasons = _one_global(project, PANDERA, "pa.Check.ge(0)", "VALUE")
    assert reasons == ()
    assert _one_global(project, PANDERA, "pa.Check.ge(1)", "VALUE")[0] != check


def test_a_callable_instance_of_an_unknown_library_class_is_named(project: Project) -> None:
    # operator.methodcaller is a library class with state (the method name and its
    # arguments) that pipetrail has no fingerprint for: a forced miss, never a version.
    _, reasons = _one_global(
        project, "import operator", 'operator.methodcaller("upper")', "VALUE(x)"
    )
    assert len(reasons) == 1
    assert reasons[0].startswith("global 'f:VALUE' (methodcaller): ")
    assert "no fingerprint is registered for operator.methodcaller" in reasons[0]
    assert "pipetrail.register_fingerprint(methodcaller, fn)" in reasons[0]


CALLABLE_CLASS = """
class Scale:
    def __init__(self, k):
        self.k = k

    def __call__(self, x):
        return x * self.k
"""


def test_a_callable_instance_of_a_project_class_is_covered(project: Project) -> None:
    base, reasons = _one_global(project, CALLABLE_CLASS, "Scale(2)", "VALUE(x)")
    assert reasons == ()
    assert _one_global(project, CALLABLE_CLASS, "Scale(3)", "VALUE(x)")[0] != base
    assert _one_global(project, CALLABLE_CLASS, "Scale(2.0)", "VALUE(x)")[0] != base
    other_code = CALLABLE_CLASS.replace("x * self.k", "x + self.k")
    assert _one_global(project, other_code, "Scale(2)", "VALUE(x)")[0] != base


def test_a_project_class_instance_that_reaches_itself_terminates(project: Project) -> None:
    setup = "class Node:\n    def __init__(self):\n        self.me = self\n"
    _, reasons = _one_global(project, setup, "Node()", "VALUE")
    assert reasons == ()


def test_a_slotted_project_instance_is_covered_by_its_slots(project: Project) -> None:
    setup = "class P:\n    __slots__ = ('k',)\n\n    def __init__(self, k):\n        self.k = k\n"
    base, reasons = _one_global(project, setup, "P(1)", "VALUE.k")
    assert reasons == ()
    assert _one_global(project, setup, "P(2)", "VALUE.k")[0] != base


def test_class_level_values_are_covered_as_they_are_now(project: Project) -> None:
    # A class attribute set after the class body: the source alone does not show it.
    source = """
        class Config:
            LIMIT = 1
            NAMES = ("a",)

            @property
            def double(self):
                return 2 * self.LIMIT


        Config.LIMIT = VALUE


        def f(x):
            return min(x, Config.LIMIT)
    """
    base = project.fingerprint({"mod": source.replace("VALUE", "5")})
    assert base.unhashable == ()
    assert project.fingerprint({"mod": source.replace("VALUE", "6")}).digest != base.digest


def test_sklearn_estimator_is_covered_by_its_params(project: Project) -> None:
    setup = "from sklearn.linear_model import LogisticRegression"
    base, reasons = _one_global(project, setup, "LogisticRegression(C=1.0)", "VALUE")
    assert reasons == ()  # it used to force a miss: an estimator is not a plain value
    assert _one_global(project, setup, "LogisticRegression(C=0.5)", "VALUE")[0] != base
    assert _one_global(project, setup, "LogisticRegression(C=1.0)", "VALUE")[0] == base


def test_a_subclass_of_a_builtin_container_covers_its_methods(project: Project) -> None:
    setup = "class Defaults(dict):\n    def __missing__(self, key):\n        return MISSING\n"
    base, reasons = _one_global(project, setup.replace("MISSING", "0"), "Defaults(a=1)", "VALUE")
    assert reasons == ()
    changed, _ = _one_global(project, setup.replace("MISSING", "1"), "Defaults(a=1)", "VALUE")
    assert changed != base


def test_bound_methods_cover_their_object(project: Project) -> None:
    base, reasons = _one_global(project, "", '{"a": 1}.get', "VALUE(x)")
    assert reasons == ()
    assert _one_global(project, "", '{"a": 2}.get', "VALUE(x)")[0] != base
    setup = CALLABLE_CLASS
    method, reasons = _one_global(project, setup, "Scale(2).__call__", "VALUE(x)")
    assert reasons == ()
    assert _one_global(project, setup, "Scale(5).__call__", "VALUE(x)")[0] != method
    pattern, reasons = _one_global(project, "import re", 're.compile("a+").match', "VALUE(x)")
    assert reasons == ()
    assert _one_global(project, "import re", 're.compile("b+").match', "VALUE(x)")[0] != pattern


# -- library functions: which one, not only the version -----------------------------------


@pytest.mark.parametrize(
    ("setup", "first", "second"),
    [
        ("import numpy as np", "np.mean", "np.median"),  # numpy dispatchers
        ("import numpy as np", "np.exp", "np.log"),  # ufuncs
        ("from sklearn import metrics", "metrics.f1_score", "metrics.accuracy_score"),
        ("", "max", "min"),  # builtins
        ("import math", "math.floor", "math.ceil"),
        ("import pandas as pd", "pd.DataFrame", "pd.Series"),  # classes
    ],
)
def test_swapping_a_library_callable_changes_the_digest(
    project: Project, setup: str, first: str, second: str
) -> None:
    base, reasons = _one_global(project, setup, first, "VALUE(x)")
    assert reasons == ()
    assert _one_global(project, setup, second, "VALUE(x)")[0] != base


def test_polars_col_is_the_librarys_own_object(project: Project) -> None:
    # pl.col answers any attribute (pl.col.__pipetrail_func__ is an expression): it must
    # neither confuse the walker nor force a miss.
    source = """
        import polars as pl
        from polars import col


        def f(df):
            return df.with_columns(pl.col("a").alias("b"), col("c"))
    """
    found = project.fingerprint({"mod": source})
    assert found.unhashable == ()
    assert found.distributions["polars"] == importlib.metadata.version("polars")


def test_library_singletons_and_rng_functions_do_not_force_a_miss(project: Project) -> None:
    source = """
        import random

        import numpy as np


        def f(x):
            np.random.seed(0)
            random.seed(1)
            return random.random() + np.random.rand()
    """
    assert project.fingerprint({"mod": source}).unhashable == ()


def test_type_annotations_do_not_force_a_miss(project: Project) -> None:
    source = """
        from typing import Optional, TypeVar, Union

        import pandas as pd

        Vector = list[float]
        Maybe = Optional[pd.DataFrame]
        Either = int | str
        T = TypeVar("T")


        def f(x: Vector, y: Maybe, z: Either, w: T) -> Union[int, None]:
            return None
    """
    assert project.fingerprint({"mod": source}).unhashable == ()


def test_an_annotation_shown_by_a_memory_address_is_named(project: Project) -> None:
    source = """
        from typing import Annotated


        class Marker:
            pass


        Port = Annotated[int, Marker()]


        def f(x: Port) -> int:
            return x
    """
    found = project.fingerprint({"mod": source})
    assert len(found.unhashable) == 1
    assert "'f:Port'" in found.unhashable[0]
    assert "memory address" in found.unhashable[0]


# -- mocks and objects with synthetic attributes ------------------------------------------


def test_mocks_do_not_confuse_the_walker(project: Project) -> None:
    source = """
        from unittest import mock

        CLIENT = mock.Mock()
        MAGIC = mock.MagicMock()
        CALL = mock.call


        def f(x):
            return CLIENT(x), MAGIC.get(x), CALL
    """
    found = project.fingerprint({"mod": source})
    named = sorted(reason.split(":")[1].split("'")[0] for reason in found.unhashable)
    assert named == ["CLIENT", "MAGIC"]


def test_a_mock_claiming_to_be_a_function_is_named(project: Project) -> None:
    source = """
        from unittest import mock


        def helper(x):
            return x


        FAKE = mock.Mock(spec=helper)


        def f(x):
            return FAKE(x)
    """
    found = project.fingerprint({"mod": source})
    assert len(found.unhashable) == 1
    assert "'f:FAKE'" in found.unhashable[0]
    assert "a mock or a proxy" in found.unhashable[0]


def test_a_value_whose_reading_raises_is_named(project: Project) -> None:
    source = """
        from unittest import mock

        SETTINGS = {"client": mock.Mock(spec=dict)}


        def f(x):
            return SETTINGS["client"]
    """
    found = project.fingerprint({"mod": source})
    assert len(found.unhashable) == 1
    assert found.unhashable[0].startswith("global 'f:SETTINGS' (dict): reading it raised ")


def test_an_object_answering_every_attribute_is_named(project: Project) -> None:
    source = """
        class Anything:
            def __getattr__(self, name):
                return Anything()

            def __call__(self, *args):
                return self


        class Holder:
            pass


        HOLDER = Holder()
        HOLDER.__dict__["lock"] = __import__("threading").Lock()


        def f(x):
            return HOLDER, Anything()
    """
    found = project.fingerprint({"mod": source})
    assert len(found.unhashable) == 1
    assert "'f:HOLDER'" in found.unhashable[0]


# -- wrappers, closures, lambdas and defaults ---------------------------------------------

DECORATED = """
import functools


def twice(fn):
    @functools.wraps(fn)
    def wrapper(x):
        return fn(x) + OFFSET

    return wrapper


@twice
def helper(x):
    return x * FACTOR


def f(x):
    return helper(x)
"""


def test_a_decorators_wrapper_code_is_covered(project: Project) -> None:
    # inspect.unwrap used to skip the wrapper: editing the decorator kept the digest.
    base = project.fingerprint({"mod": DECORATED.replace("OFFSET", "1").replace("FACTOR", "2")})
    assert base.unhashable == ()
    wrapper = DECORATED.replace("OFFSET", "5").replace("FACTOR", "2")
    assert project.fingerprint({"mod": wrapper}).digest != base.digest
    wrapped = DECORATED.replace("OFFSET", "1").replace("FACTOR", "3")
    assert project.fingerprint({"mod": wrapped}).digest != base.digest


def test_names_only_a_decorator_reads_are_not_values_of_the_function(project: Project) -> None:
    # `@step(contracts=...)` is keyed by its own components; the decorator's arguments are
    # not values the function reads (a Contract there used to force a miss every run).
    source = """
        import threading

        from pipetrail import step

        LOCK = threading.Lock()


        def register(*args):
            return lambda fn: fn


        @register(LOCK)
        def f(x):
            return x
    """
    assert project.fingerprint({"mod": source}).unhashable == ()


def test_attributes_set_on_a_function_are_covered(project: Project) -> None:
    source = """
        def with_scale(k):
            def mark(fn):
                fn.scale = k
                return fn

            return mark


        @with_scale(SCALE)
        def helper(x):
            return x * helper.scale


        def f(x):
            return helper(x)
    """
    base = project.fingerprint({"mod": source.replace("SCALE", "2")})
    assert base.unhashable == ()
    assert project.fingerprint({"mod": source.replace("SCALE", "3")}).digest != base.digest


def test_a_step_over_a_decorated_function_covers_the_decorator(project: Project) -> None:
    source = DECORATED.replace("def f(x):\n    return helper(x)\n", "")
    source = "from pipetrail import step\n" + source + "\n\nf = step(helper)\n"
    base = project.fingerprint({"mod": source.replace("OFFSET", "1").replace("FACTOR", "2")})
    changed = project.fingerprint({"mod": source.replace("OFFSET", "5").replace("FACTOR", "2")})
    assert changed.digest != base.digest
    assert "return x * 2" in base.source  # the shown source is still the function's own


def test_a_library_wrapper_covers_the_wrapped_project_function(project: Project) -> None:
    source = """
        import functools


        @functools.lru_cache(maxsize=None)
        def helper(x):
            return x * FACTOR


        def f(x):
            return helper(x)
    """
    base = project.fingerprint({"mod": source.replace("FACTOR", "2")})
    assert base.unhashable == ()
    assert project.fingerprint({"mod": source.replace("FACTOR", "3")}).digest != base.digest


LAMBDAS = """
ADD = lambda x: x + FIRST  # noqa: E731
MUL = lambda x: x * SECOND  # noqa: E731


def f(x):
    return ADD(MUL(x))
"""


@pytest.mark.parametrize(("first", "second"), [("9", "2"), ("1", "9")])
def test_two_lambdas_of_one_module_are_both_covered(
    project: Project, first: str, second: str
) -> None:
    base = project.fingerprint({"mod": LAMBDAS.replace("FIRST", "1").replace("SECOND", "2")})
    changed = LAMBDAS.replace("FIRST", first).replace("SECOND", second)
    assert project.fingerprint({"mod": changed}).digest != base.digest


FACTORY = """
def make(k):
    def inner(x):
        return x * k

    return inner


TIMES_A = make(FIRST)
TIMES_B = make(3)


def f(x):
    return TIMES_A(x) + TIMES_B(x)
"""


def test_two_closures_of_one_factory_are_both_covered(project: Project) -> None:
    # Both closures share a qualname; the second used to overwrite the first.
    base = project.fingerprint({"mod": FACTORY.replace("FIRST", "2")})
    assert project.fingerprint({"mod": FACTORY.replace("FIRST", "5")}).digest != base.digest


def test_default_values_bound_by_a_factory_are_covered(project: Project) -> None:
    source = """
        def make(k):
            def inner(x, k=k):
                return x * k

            return inner


        TIMES = make(FACTOR)


        def f(x):
            return TIMES(x)
    """
    base = project.fingerprint({"mod": source.replace("FACTOR", "2")})
    assert project.fingerprint({"mod": source.replace("FACTOR", "3")}).digest != base.digest


def test_partial_of_a_library_function_names_it(project: Project) -> None:
    setup = "import functools\nimport numpy as np"
    base, reasons = _one_global(project, setup, "functools.partial(np.mean, axis=0)", "VALUE(x)")
    assert reasons == ()
    other = "functools.partial(np.median, axis=0)"
    assert _one_global(project, setup, other, "VALUE(x)")[0] != base


def test_containers_of_functions_are_covered(project: Project) -> None:
    setup = "import numpy as np\n\n\ndef mine(x):\n    return x + BODY\n"
    value = '{"mean": np.mean, "mine": mine}'
    base, reasons = _one_global(project, setup.replace("BODY", "1"), value, 'VALUE["mine"](x)')
    assert reasons == ()
    changed, _ = _one_global(project, setup.replace("BODY", "2"), value, 'VALUE["mine"](x)')
    assert changed != base
    swapped = '{"mean": np.median, "mine": mine}'
    other, _ = _one_global(project, setup.replace("BODY", "1"), swapped, 'VALUE["mine"](x)')
    assert other != base


# -- local imports --------------------------------------------------------------------------


def test_a_project_module_whose_import_fails_is_named(project: Project) -> None:
    # It exists but imports something missing: it used to be dropped silently, so the
    # step was cached on the code path that does not use it.
    files = {
        "{mod}.py": """
            def f(x):
                try:
                    import {broken}
                except ImportError:
                    return x
                return {broken}.run(x)
        """,
        "{broken}.py": "import {absent}\n\n\ndef run(x):\n    return x\n",
    }
    found = code_fingerprint(project.load_tree(files, "{mod}").f)
    assert len(found.unhashable) == 1
    reason = found.unhashable[0]
    assert reason.startswith(f"project module {project.name('broken')!r} imported by 'f'")
    assert f"ModuleNotFoundError: No module named {project.name('absent')!r}" in reason


def test_a_missing_submodule_of_a_project_package_is_not_code(project: Project) -> None:
    files = {
        "{mod}.py": """
            def f(x):
                try:
                    from {pkg} import optional
                except ImportError:
                    return x
                return optional.run(x)
        """,
        "{pkg}/__init__.py": "",
    }
    assert code_fingerprint(project.load_tree(files, "{mod}").f).unhashable == ()
