"""Code fingerprints over real modules written to ``tmp_path`` and imported.

Each scenario writes one or more versions of a small project into fresh folders and
imports them under the *same* module names, so the only difference between two
fingerprints is the code itself. Module names are unique per test (``ptcode_<hex>_...``)
and removed from ``sys.modules`` afterwards.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import sys
import types
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import pipetrail
from pipetrail.core.step import step
from pipetrail.core.version import VERSION
from pipetrail.hashing import is_digest
from pipetrail.hashing.code import (
    code_fingerprint,
    distribution_of,
    is_project_local,
    normalize_source,
)

if TYPE_CHECKING:
    from tests.unit.hashing.conftest import Project


def digest_of(project: Project, files: dict[str, str], func: str = "f") -> str:
    return project.fingerprint(files, func).digest


# -- what does not change a fingerprint ---------------------------------------------------

BASE = """
    import functools


    def tag(label):
        def decorate(func):
            return func

        return decorate


    @tag("v1")
    def f(x, y=2):
        total = x + y
        return total * 3
"""

COSMETIC_VARIANTS = {
    "comment": """
        import functools


        def tag(label):
            def decorate(func):
                return func

            return decorate


        @tag("v1")
        def f(x, y=2):
            # add them up
            total = x + y  # the sum
            return total * 3
    """,
    "docstring-added": """
        import functools


        def tag(label):
            def decorate(func):
                return func

            return decorate


        @tag("v1")
        def f(x, y=2):
            '''Add and triple.

            A long explanation that does not change what the code does.
            '''
            total = x + y
            return total * 3
    """,
    "blank-lines": """
        import functools
        def tag(label):
            def decorate(func):
                return func
            return decorate
        @tag("v1")
        def f(x, y=2):

            total = x + y


            return total * 3
    """,
    "formatting": """
        import functools


        def tag(label):
            def decorate(func):
                return func

            return decorate


        @tag('v1')
        def f(
            x,
            y = 2,
        ):
            total = (x
                     + y)
            return (total) * 3
    """,
    "decorator-arguments": """
        import functools


        def tag(label):
            def decorate(func):
                return func

            return decorate


        @tag("v2, a different label")
        def f(x, y=2):
            total = x + y
            return total * 3
    """,
    "unrelated-function-in-same-module": """
        import functools


        def tag(label):
            def decorate(func):
                return func

            return decorate


        def unrelated():
            return "this is new and f does not call it"


        @tag("v1")
        def f(x, y=2):
            total = x + y
            return total * 3
    """,
}


@pytest.mark.parametrize("variant", sorted(COSMETIC_VARIANTS))
def test_cosmetic_changes_keep_the_digest(project: Project, variant: str) -> None:
    base = project.fingerprint({"mod": BASE})
    changed = project.fingerprint({"mod": COSMETIC_VARIANTS[variant]})
    assert changed.digest == base.digest
    assert changed.parts == base.parts


def test_docstring_change_keeps_the_digest(project: Project) -> None:
    first = """
        def f(x):
            '''Old words.'''
            return x
    """
    second = """
        def f(x):
            '''New, entirely different words.'''
            return x
    """
    assert digest_of(project, {"mod": first}) == digest_of(project, {"mod": second})


def test_fingerprint_is_deterministic_across_imports(project: Project) -> None:
    first = project.fingerprint({"mod": BASE})
    second = project.fingerprint({"mod": BASE})
    assert first == second
    assert is_digest(first.digest)


def test_moving_a_function_within_the_file_keeps_the_digest(project: Project) -> None:
    first = """
        def g(x):
            return x + 1


        def f(x):
            return g(x)
    """
    second = """
        def f(x):
            return g(x)


        def g(x):
            return x + 1
    """
    assert digest_of(project, {"mod": first}) == digest_of(project, {"mod": second})


# -- what does change a fingerprint -------------------------------------------------------

BODY_CHANGES = {
    "operator": "total = x - y",
    "literal": "total = x + y + 1",
    "call": "total = max(x, y)",
    "order": "total = y + x",
}


@pytest.mark.parametrize("change", sorted(BODY_CHANGES))
def test_body_changes_change_the_digest(project: Project, change: str) -> None:
    base = project.fingerprint({"mod": BASE})
    source = BASE.replace("total = x + y", BODY_CHANGES[change])
    assert source != BASE
    changed = project.fingerprint({"mod": source})
    assert changed.digest != base.digest
    assert changed.parts[project.name("mod") + ".f"] != base.parts[project.name("mod") + ".f"]


def test_signature_default_change_changes_the_digest(project: Project) -> None:
    base = digest_of(project, {"mod": BASE})
    assert digest_of(project, {"mod": BASE.replace("y=2", "y=3")}) != base


def test_parts_name_the_function(project: Project) -> None:
    found = project.fingerprint({"mod": BASE})
    # `tag` returns the function unchanged: it ran once at definition and is not code f
    # runs (a decorator whose wrapper runs code is covered through that wrapper).
    assert set(found.parts) == {project.name("mod") + ".f"}
    assert all(is_digest(value) for value in found.parts.values())
    assert found.source.startswith('@tag("v1")\ndef f(x, y=2):')
    assert found.unhashable == ()


# -- helpers: same module, other local modules --------------------------------------------

SAME_MODULE = """
    def helper(x):
        return x * HELPER_BODY


    def unrelated():
        return "UNRELATED"


    def f(x):
        return helper(x) + 1
"""


def _same_module(body: str = "2", unrelated: str = "UNRELATED") -> dict[str, str]:
    source = SAME_MODULE.replace("HELPER_BODY", body).replace("UNRELATED", unrelated)
    return {"mod": source}


def test_helper_in_same_module_is_covered(project: Project) -> None:
    base = project.fingerprint(_same_module())
    assert project.name("mod") + ".helper" in base.parts
    assert project.name("mod") + ".unrelated" not in base.parts
    assert digest_of(project, _same_module(body="3")) != base.digest


def test_unrelated_function_in_same_module_is_not_covered(project: Project) -> None:
    base = digest_of(project, _same_module())
    assert digest_of(project, _same_module(unrelated="changed")) == base


HELPERS = """
    def g(x):
        return x + G_BODY


    def unrelated():
        return "UNRELATED"
"""


def _helpers(body: str = "1", unrelated: str = "UNRELATED") -> str:
    return HELPERS.replace("G_BODY", body).replace("UNRELATED", unrelated)


ATTRIBUTE_USE = """
    import {helpers}


    def f(x):
        return {helpers}.g(x) * 2
"""

FROM_IMPORT_USE = """
    from {helpers} import g


    def f(x):
        return g(x) * 2
"""

ALIASED_IMPORT_USE = """
    import {helpers} as h


    def f(x):
        return h.g(x) * 2
"""


@pytest.mark.parametrize(
    "user",
    [ATTRIBUTE_USE, FROM_IMPORT_USE, ALIASED_IMPORT_USE],
    ids=["import-attribute", "from-import", "import-as"],
)
def test_helper_in_other_local_module_is_covered(project: Project, user: str) -> None:
    base = project.fingerprint({"mod": user, "helpers": _helpers()})
    assert project.name("helpers") + ".g" in base.parts
    changed = project.fingerprint({"mod": user, "helpers": _helpers(body="100")})
    assert changed.digest != base.digest


@pytest.mark.parametrize(
    "user",
    [ATTRIBUTE_USE, FROM_IMPORT_USE, ALIASED_IMPORT_USE],
    ids=["import-attribute", "from-import", "import-as"],
)
def test_unrelated_function_in_helper_module_is_not_covered(project: Project, user: str) -> None:
    base = project.fingerprint({"mod": user, "helpers": _helpers()})
    # Attribute resolution covers helpers.g only, not the whole helpers module.
    assert project.name("helpers") not in base.parts
    changed = project.fingerprint({"mod": user, "helpers": _helpers(unrelated="changed")})
    assert changed.digest == base.digest


def test_module_used_as_a_value_is_covered_whole(project: Project) -> None:
    user = """
        import {helpers}


        def f(x):
            return getattr({helpers}, "g")(x)
    """
    base = project.fingerprint({"mod": user, "helpers": _helpers()})
    assert project.name("helpers") in base.parts
    changed = project.fingerprint({"mod": user, "helpers": _helpers(unrelated="changed")})
    assert changed.digest != base.digest


def test_transitive_helpers_are_covered(project: Project) -> None:
    user = """
        from {helpers} import g


        def f(x):
            return g(x)
    """
    helpers = """
        from {deep} import h


        def g(x):
            return h(x) + 1
    """
    deep = """
        def h(x):
            return x * DEEP
    """
    base = project.fingerprint({"mod": user, "helpers": helpers, "deep": deep.replace("DEEP", "2")})
    assert project.name("deep") + ".h" in base.parts
    changed = project.fingerprint(
        {"mod": user, "helpers": helpers, "deep": deep.replace("DEEP", "3")}
    )
    assert changed.digest != base.digest


def test_local_class_is_covered(project: Project) -> None:
    source = """
        class Scaler:
            def __init__(self, k):
                self.k = k

            def apply(self, x):
                return x * FACTOR


        def f(x):
            return Scaler(2).apply(x)
    """
    base = project.fingerprint({"mod": source.replace("FACTOR", "self.k")})
    assert project.name("mod") + ".Scaler" in base.parts
    changed = project.fingerprint({"mod": source.replace("FACTOR", "(self.k + 1)")})
    assert changed.digest != base.digest


def test_function_local_imports_are_covered(project: Project) -> None:
    user = """
        def f(x):
            from {helpers} import g
            import {other}

            return g(x) + {other}.k(x)
    """
    other = """
        def k(x):
            return x - K_BODY
    """
    files = {"mod": user, "helpers": _helpers(), "other": other.replace("K_BODY", "1")}
    base = project.fingerprint(files)
    assert project.name("helpers") + ".g" in base.parts
    assert project.name("other") + ".k" in base.parts
    assert project.fingerprint({**files, "helpers": _helpers(body="5")}).digest != base.digest
    assert (
        project.fingerprint({**files, "other": other.replace("K_BODY", "2")}).digest != base.digest
    )
    assert project.fingerprint({**files, "helpers": _helpers(unrelated="x")}).digest == (
        base.digest
    )


def test_function_local_third_party_import_is_recorded(project: Project) -> None:
    source = """
        def f(values):
            import numpy as np

            return np.asarray(values).sum()
    """
    found = project.fingerprint({"mod": source})
    assert found.distributions["numpy"] == importlib.metadata.version("numpy")


def test_function_local_relative_import_is_covered(project: Project) -> None:
    files = {
        "{pkg}/__init__.py": "",
        "{pkg}/steps.py": """
            def f(x):
                from .helpers import g

                return g(x)
        """,
        "{pkg}/helpers.py": _helpers(),
    }
    module = project.load_tree(files, "{pkg}.steps")
    base = code_fingerprint(module.f)
    assert project.name("pkg") + ".helpers.g" in base.parts
    module = project.load_tree({**files, "{pkg}/helpers.py": _helpers(body="7")}, "{pkg}.steps")
    assert code_fingerprint(module.f).digest != base.digest


def test_function_local_import_from_namespace_package_is_covered(project: Project) -> None:
    # A folder without __init__.py (a namespace package) is still the user's code.
    files = {
        "{mod}.py": """
            def f(x):
                from {pkg}.helpers import g

                return g(x)
        """,
        "{pkg}/helpers.py": _helpers(),
    }
    base = code_fingerprint(project.load_tree(files, "{mod}").f)
    assert project.name("pkg") + ".helpers.g" in base.parts
    changed = {**files, "{pkg}/helpers.py": _helpers(body="7")}
    assert code_fingerprint(project.load_tree(changed, "{mod}").f).digest != base.digest


def test_function_local_import_of_missing_module_is_ignored(project: Project) -> None:
    source = """
        def f(x):
            try:
                import {absent}
            except ImportError:
                return x
            return {absent}.run(x)
    """
    found = code_fingerprint(project.load_tree({"{mod}.py": source}, "{mod}").f)
    assert found.unhashable == ()
    assert list(found.parts) == [project.name("mod") + ".f"]


def test_function_local_import_that_fails_is_reported(project: Project) -> None:
    files = {
        "{mod}.py": """
            def f(x):
                import {broken}

                return {broken}.run(x)
        """,
        "{broken}.py": "raise RuntimeError('cannot import me')\n",
    }
    found = code_fingerprint(project.load_tree(files, "{mod}").f)
    assert len(found.unhashable) == 1
    assert project.name("broken") in found.unhashable[0]
    assert "cannot import me" in found.unhashable[0]


def test_function_local_third_party_import_stays_lazy(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipetrail.hashing import locality

    site = tmp_path / "venv" / "site-packages"
    heavy = project.name("heavy")
    (site / heavy).mkdir(parents=True)
    (site / heavy / "__init__.py").write_text("raise RuntimeError('imported eagerly')\n")
    monkeypatch.syspath_prepend(str(site))
    locality.non_local_roots.cache_clear()
    try:
        source = """
            def f(x):
                import HEAVY

                return HEAVY.run(x)
        """.replace("HEAVY", heavy)
        found = code_fingerprint(project.load_tree({"{mod}.py": source}, "{mod}").f)
    finally:
        monkeypatch.undo()
        locality.non_local_roots.cache_clear()
    assert heavy not in sys.modules
    assert found.unhashable == ()


# -- recursion ----------------------------------------------------------------------------


def test_recursion_terminates(project: Project) -> None:
    source = """
        def f(n):
            return 1 if n <= 1 else n * f(n - 1)
    """
    found = project.fingerprint({"mod": source})
    assert list(found.parts) == [project.name("mod") + ".f"]
    changed = project.fingerprint({"mod": source.replace("n * f", "n + f")})
    assert changed.digest != found.digest


def test_mutual_recursion_terminates_and_covers_both(project: Project) -> None:
    source = """
        def is_even(n):
            return True if n == 0 else is_odd(n - 1)


        def is_odd(n):
            return False if n == 0 else is_even(n - ODD_STEP)


        def f(n):
            return is_even(n)
    """
    base = project.fingerprint({"mod": source.replace("ODD_STEP", "1")})
    assert set(base.parts) == {
        project.name("mod") + ".f",
        project.name("mod") + ".is_even",
        project.name("mod") + ".is_odd",
    }
    changed = project.fingerprint({"mod": source.replace("ODD_STEP", "2")})
    assert changed.digest != base.digest


def test_mutual_recursion_across_modules_terminates(project: Project) -> None:
    first = """
        import {second}


        def f(n):
            return 0 if n == 0 else {second}.g(n - 1)
    """
    second = """
        import {mod}


        def g(n):
            return 0 if n == 0 else {mod}.f(n - 1)
    """
    found = project.fingerprint({"mod": first, "second": second})
    assert project.name("second") + ".g" in found.parts
    assert project.name("mod") + ".f" in found.parts


# -- globals ------------------------------------------------------------------------------

CONSTANT = """
    SCALE = SCALE_VALUE
    NAMES = ("a", "b")


    def f(x):
        return x * SCALE
"""


def test_module_constant_value_is_covered(project: Project) -> None:
    base = project.fingerprint({"mod": CONSTANT.replace("SCALE_VALUE", "2")})
    changed = project.fingerprint({"mod": CONSTANT.replace("SCALE_VALUE", "3")})
    assert changed.parts == base.parts  # the code is the same ...
    assert changed.digest != base.digest  # ... but the value it reads is not
    as_float = project.fingerprint({"mod": CONSTANT.replace("SCALE_VALUE", "2.0")})
    assert as_float.digest != base.digest


def test_unread_constant_is_not_covered(project: Project) -> None:
    base = digest_of(project, {"mod": CONSTANT.replace("SCALE_VALUE", "2")})
    other = CONSTANT.replace("SCALE_VALUE", "2").replace('("a", "b")', '("c",)')
    assert digest_of(project, {"mod": other}) == base


def test_constant_in_helper_module_is_covered(project: Project) -> None:
    user = """
        import {helpers}


        def f(x):
            return x * {helpers}.FACTOR
    """
    base = digest_of(project, {"mod": user, "helpers": "FACTOR = 2\n"})
    assert digest_of(project, {"mod": user, "helpers": "FACTOR = 5\n"}) != base


def test_unhashable_global_is_reported(project: Project) -> None:
    source = """
        import threading

        LOCK = threading.Lock()


        def f(x):
            with LOCK:
                return x
    """
    found = project.fingerprint({"mod": source})
    assert len(found.unhashable) == 1
    assert found.unhashable[0].startswith("global 'f:LOCK' (lock): ")
    assert "no fingerprint is registered for _thread.lock" in found.unhashable[0]
    assert "pipetrail.register_fingerprint(lock, fn)" in found.unhashable[0]


LOCAL_INSTANCE = """
    import threading


    class Registry:
        def __init__(self, names):
            self.names = names

        def lookup(self, x):
            return self.names[x % len(self.names)]


    REGISTRY = Registry(NAMES)


    def f(x):
        return REGISTRY.lookup(x)
"""


def test_instance_of_plain_local_class_is_covered_by_its_state_and_class(
    project: Project,
) -> None:
    base = project.fingerprint({"mod": LOCAL_INSTANCE.replace("NAMES", '["a", "b"]')})
    assert base.unhashable == ()
    assert project.name("mod") + ".Registry" in base.parts
    state = project.fingerprint({"mod": LOCAL_INSTANCE.replace("NAMES", '["a", "c"]')})
    assert state.digest != base.digest
    method = LOCAL_INSTANCE.replace("NAMES", '["a", "b"]').replace("x % len", "(x + 1) % len")
    assert project.fingerprint({"mod": method}).digest != base.digest


def test_instance_of_local_class_holding_an_unknown_value_is_reported(project: Project) -> None:
    found = project.fingerprint({"mod": LOCAL_INSTANCE.replace("NAMES", "threading.Lock()")})
    assert len(found.unhashable) == 1
    assert found.unhashable[0].startswith("global 'f:REGISTRY' (Registry): ")
    assert "_thread.lock" in found.unhashable[0]


def test_logger_global_is_fine(project: Project) -> None:
    source = """
        import logging

        log = logging.getLogger("LOGGER_NAME")


        def f(x):
            log.info("f called")
            return x
    """
    base = project.fingerprint({"mod": source.replace("LOGGER_NAME", "pipeline.a")})
    assert base.unhashable == ()
    renamed = project.fingerprint({"mod": source.replace("LOGGER_NAME", "pipeline.b")})
    assert renamed.unhashable == ()
    assert renamed.digest != base.digest


def test_partial_arguments_are_covered(project: Project) -> None:
    source = """
        import functools


        def scale(x, k):
            return x * k


        SCALE = functools.partial(scale, k=K_VALUE)


        def f(x):
            return SCALE(x)
    """
    base = project.fingerprint({"mod": source.replace("K_VALUE", "2")})
    assert project.name("mod") + ".scale" in base.parts
    assert base.unhashable == ()
    changed = project.fingerprint({"mod": source.replace("K_VALUE", "3")})
    assert changed.digest != base.digest


def test_partial_with_unhashable_argument_is_reported(project: Project) -> None:
    source = """
        import functools
        import threading


        def guarded(x, lock):
            with lock:
                return x


        GUARDED = functools.partial(guarded, lock=threading.Lock())


        def f(x):
            return GUARDED(x)
    """
    found = project.fingerprint({"mod": source})
    assert any("GUARDED" in reason for reason in found.unhashable)


# -- distributions ------------------------------------------------------------------------

THIRD_PARTY = """
    import json

    import numpy as np
    import pandas as pd


    def f(values):
        frame = pd.DataFrame({"v": np.asarray(values)})
        return json.dumps(frame["v"].tolist())
"""


def test_third_party_references_record_installed_versions(project: Project) -> None:
    found = project.fingerprint({"mod": THIRD_PARTY})
    assert found.distributions["numpy"] == importlib.metadata.version("numpy")
    assert found.distributions["pandas"] == importlib.metadata.version("pandas")
    assert found.unhashable == ()


def test_stdlib_references_are_not_distributions(project: Project) -> None:
    found = project.fingerprint({"mod": THIRD_PARTY})
    assert "json" not in found.distributions
    assert set(found.distributions) == {"numpy", "pandas", "python"}


def test_python_major_minor_is_recorded(project: Project) -> None:
    found = project.fingerprint({"mod": "def f():\n    return 1\n"})
    assert found.distributions == {"python": f"{sys.version_info[0]}.{sys.version_info[1]}"}


def test_pipetrail_references_record_its_version(project: Project) -> None:
    source = """
        from pipetrail.hashing import digest_value


        def f(x):
            return digest_value(x)
    """
    found = project.fingerprint({"mod": source})
    assert found.distributions["pipetrail"] == VERSION
    assert not any(name.startswith("pipetrail") for name in found.parts)


def test_distribution_of() -> None:
    assert distribution_of("numpy.linalg") == ("numpy", importlib.metadata.version("numpy"))
    assert distribution_of("json") is None
    assert distribution_of("os.path") is None
    assert distribution_of("builtins") is None
    assert distribution_of("no_such_module_" + uuid.uuid4().hex) is None


def test_third_party_version_is_part_of_the_digest(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipetrail.hashing import code as code_module

    base = project.fingerprint({"mod": THIRD_PARTY})
    real = code_module.distribution_of

    def older_numpy(module_name: str) -> tuple[str, str] | None:
        found = real(module_name)
        if found is not None and found[0] == "numpy":
            return ("numpy", "0.0.1")
        return found

    monkeypatch.setattr(code_module, "distribution_of", older_numpy)
    changed = project.fingerprint({"mod": THIRD_PARTY})
    assert changed.distributions["numpy"] == "0.0.1"
    assert changed.digest != base.digest


# -- closures -----------------------------------------------------------------------------

CLOSURE = """
    def helper_a(x):
        return x + 1


    def helper_b(x):
        return x + 2


    def make(k, fn=helper_a):
        def inner(x):
            return fn(x) * k

        return inner
"""


def test_closure_free_variables_are_covered(project: Project) -> None:
    module = project.load({"mod": CLOSURE})
    two = code_fingerprint(module.make(2))
    assert code_fingerprint(module.make(2)).digest == two.digest
    assert code_fingerprint(module.make(3)).digest != two.digest
    assert code_fingerprint(module.make(2.0)).digest != two.digest


def test_closure_over_a_function_covers_that_function(project: Project) -> None:
    module = project.load({"mod": CLOSURE})
    with_a = code_fingerprint(module.make(2, module.helper_a))
    with_b = code_fingerprint(module.make(2, module.helper_b))
    assert project.name("mod") + ".helper_a" in with_a.parts
    assert project.name("mod") + ".helper_b" in with_b.parts
    assert with_a.digest != with_b.digest


def test_closure_body_of_captured_function_is_covered(project: Project) -> None:
    first = code_fingerprint(project.load({"mod": CLOSURE}).make(2))
    changed_source = CLOSURE.replace("return x + 1", "return x + 10")
    second = code_fingerprint(project.load({"mod": changed_source}).make(2))
    assert second.digest != first.digest


def test_unhashable_closure_variable_is_reported(project: Project) -> None:
    source = """
        import threading


        def make():
            lock = threading.Lock()

            def inner(x):
                with lock:
                    return x

            return inner
    """
    found = code_fingerprint(project.load({"mod": source}).make())
    assert any("lock" in reason for reason in found.unhashable)


# -- @step --------------------------------------------------------------------------------

STEP = """
    from pipetrail.core.step import step


    @step(version="STEP_VERSION")
    def f(x):
        return x + BODY
"""


def _step(version: str = "1", body: str = "1") -> dict[str, str]:
    return {"mod": STEP.replace("STEP_VERSION", version).replace("BODY", body)}


def test_step_fingerprints_its_wrapped_function(project: Project) -> None:
    module = project.load(_step())
    stepped = module.f
    assert stepped.name == "f"
    via_step = code_fingerprint(stepped)
    assert via_step == code_fingerprint(stepped.func)
    assert project.name("mod") + ".f" in via_step.parts
    assert via_step.source.startswith('@step(version="1")\ndef f(x):')


def test_step_body_change_changes_the_digest(project: Project) -> None:
    base = digest_of(project, _step())
    assert digest_of(project, _step(body="2")) != base


def test_step_decorator_arguments_do_not_change_the_digest(project: Project) -> None:
    # The declared version is its own cache-key component, not part of the code digest.
    assert digest_of(project, _step(version="2")) == digest_of(project, _step(version="1"))


def test_step_calling_another_step_covers_it(project: Project) -> None:
    source = """
        from pipetrail.core.step import step


        @step
        def helper(x):
            return x * HELPER


        @step
        def f(x):
            return helper(x) + 1
    """
    base = project.fingerprint({"mod": source.replace("HELPER", "2")})
    assert project.name("mod") + ".helper" in base.parts
    assert digest_of(project, {"mod": source.replace("HELPER", "3")}) != base.digest


def test_plain_step_object_created_in_a_test_is_fingerprinted() -> None:
    def local(x: int) -> int:
        return x + 1

    stepped = step(local)
    assert code_fingerprint(stepped) == code_fingerprint(local)


# -- functions without source -------------------------------------------------------------

EXEC_SOURCE = """
def f(x):
    return x * EXEC_BODY
"""


def _exec(namespace: dict[str, Any], body: str = "2") -> Any:
    exec(compile(EXEC_SOURCE.replace("EXEC_BODY", body), "<generated>", "exec"), namespace)  # noqa: S102 - the point of the test
    return namespace["f"]


def test_exec_function_without_module_falls_back_to_code_object() -> None:
    base = code_fingerprint(_exec({}))
    assert base.source == ""
    assert base.parts  # something was covered: no silent empty fingerprint
    assert code_fingerprint(_exec({})).digest == base.digest
    assert code_fingerprint(_exec({}, body="3")).digest != base.digest
    assert code_fingerprint(_exec({}, body="2.0")).digest != base.digest


def test_exec_function_in_local_module_falls_back_to_code_object(project: Project) -> None:
    module = project.load({"mod": "SCALE = 1\n"})
    base = code_fingerprint(_exec(vars(module)))
    assert base.source == ""
    assert project.name("mod") + ".f" in base.parts
    assert code_fingerprint(_exec(vars(module), body="3")).digest != base.digest


def test_exec_function_globals_are_covered(project: Project) -> None:
    module = project.load({"mod": "SCALE = 1\n"})
    base = code_fingerprint(_exec(vars(module), body="SCALE"))
    vars(module)["SCALE"] = 5
    assert code_fingerprint(_exec(vars(module), body="SCALE")).digest != base.digest


def test_exec_closure_free_variables_are_covered() -> None:
    source = "def make(k):\n    def inner(x):\n        return x * k\n    return inner\n"
    namespace: dict[str, Any] = {}
    exec(compile(source, "<generated>", "exec"), namespace)  # noqa: S102 - the point of the test
    make = namespace["make"]
    assert code_fingerprint(make(2)).source == ""
    assert code_fingerprint(make(2)).digest == code_fingerprint(make(2)).digest
    assert code_fingerprint(make(2)).digest != code_fingerprint(make(3)).digest


# -- normalize_source ---------------------------------------------------------------------


def test_normalize_source_ignores_formatting_and_docstrings() -> None:
    first = 'def f(a, b):\n    """Doc."""\n    return a+b  # c\n'
    second = "def f(a,\n      b):\n    return (a + b)\n"
    assert normalize_source(first) == normalize_source(second)
    assert normalize_source(first) != normalize_source(second.replace("a + b", "a - b"))


def test_normalize_source_keeps_a_function_that_is_only_a_docstring_valid() -> None:
    assert normalize_source('def f():\n    """Only a docstring."""\n') == normalize_source(
        "def f():\n    pass\n"
    )


def test_normalize_source_keeps_class_decorators() -> None:
    frozen = "@dataclass(frozen=True)\nclass C:\n    x: int\n"
    mutable = "@dataclass(frozen=False)\nclass C:\n    x: int\n"
    assert normalize_source(frozen) != normalize_source(mutable)


def test_normalize_source_dedents_methods() -> None:
    method = "    def m(self):\n        return 1\n"
    assert normalize_source(method) == normalize_source("def m(self):\n    return 1\n")


# -- is_project_local ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "module_name",
    [
        "json",
        "os",
        "importlib.metadata",
        "numpy",
        "pandas",
        "pytest",
        "pipetrail",
        "pipetrail.hashing.code",
        "pipetrail.core.step",
    ],
)
def test_is_project_local_false_for_stdlib_site_packages_and_pipetrail(module_name: str) -> None:
    importlib.import_module(module_name)
    assert not is_project_local(module_name)


def test_is_project_local_false_for_unknown_and_missing_names() -> None:
    assert not is_project_local(None)
    assert not is_project_local("")
    assert not is_project_local("no_such_module_" + uuid.uuid4().hex)
    assert not is_project_local("builtins")
    assert not is_project_local("sys")


def test_is_project_local_true_for_tmp_module(project: Project) -> None:
    module = project.load({"mod": "X = 1\n"})
    assert is_project_local(module.__name__)


def test_is_project_local_true_for_this_test_module() -> None:
    assert is_project_local(__name__)


def test_is_project_local_true_next_to_the_pipetrail_package(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only pipetrail's own folder is excluded, not the folder that contains it: a user
    # project beside an editable pipetrail checkout (a monorepo "src/") is still local.
    package_dir = Path(pipetrail.__file__).resolve().parent
    container = package_dir.parent
    if any(part in {"site-packages", "dist-packages"} for part in container.parts):
        pytest.skip("pipetrail is installed into site-packages here")
    name = f"ptcode_sibling_{uuid.uuid4().hex[:12]}"
    fake = types.ModuleType(name)
    fake.__file__ = str(container / "myproject" / "steps.py")
    monkeypatch.setitem(sys.modules, name, fake)
    assert is_project_local(name)

    inside = types.ModuleType(name + "_inside")
    inside.__file__ = str(package_dir / "plugins" / "extra.py")
    monkeypatch.setitem(sys.modules, inside.__name__, inside)
    assert not is_project_local(inside.__name__)


def test_json_module_is_importable_for_stdlib_checks() -> None:
    # Guards the parametrized stdlib case above against a shadowing local json.py.
    assert not is_project_local(json.__name__)
    assert Path(json.__file__).name == "__init__.py"
