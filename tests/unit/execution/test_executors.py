"""Choosing an executor: names, the [executor] table, and their bad values."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pipetrail import step
from pipetrail.config import load_config
from pipetrail.errors import DefinitionError, ExecutorError, ProjectError
from pipetrail.execution.executors import (
    InlineExecutor,
    executor_settings,
    is_concurrent,
    resolve_executor,
)
from pipetrail.execution.executors.dask_cluster import DaskExecutor
from pipetrail.execution.executors.processes import ProcessExecutor
from pipetrail.execution.executors.shipping import decode_result, encode_result, encode_task
from pipetrail.execution.task import ShippedError, StepTask, error_type_name

if TYPE_CHECKING:
    from pathlib import Path


def _config(tmp_path: Path, text: str = "[pipetrail]\n"):  # type: ignore[no-untyped-def]
    (tmp_path / "pipetrail.toml").write_text(text)
    return load_config(root=tmp_path)


def test_the_default_is_inline(tmp_path: Path) -> None:
    executor = resolve_executor(None, _config(tmp_path))
    assert isinstance(executor, InlineExecutor)
    assert executor_settings(executor) == {}


def test_the_project_file_chooses_the_executor_and_its_settings(tmp_path: Path) -> None:
    config = _config(tmp_path, '[pipetrail]\nexecutor = "processes"\n[executor]\nworkers = 3\n')
    executor = resolve_executor(None, config)
    assert isinstance(executor, ProcessExecutor)
    assert executor.settings() == {"workers": 3}


def test_a_name_given_to_the_run_wins_over_the_file(tmp_path: Path) -> None:
    config = _config(tmp_path, '[pipetrail]\nexecutor = "processes"\n')
    executor = resolve_executor("dask=tcp://10.0.0.5:8786", config)
    assert isinstance(executor, DaskExecutor)
    assert executor.settings() == {"address": "tcp://10.0.0.5:8786", "cluster": "remote"}
    assert isinstance(resolve_executor("inline", config), InlineExecutor)


def test_the_executor_table_gives_the_dask_address(tmp_path: Path) -> None:
    config = _config(
        tmp_path, '[pipetrail]\nexecutor = "dask"\n[executor]\naddress = "tcp://h:1"\n'
    )
    executor = resolve_executor(None, config)
    assert isinstance(executor, DaskExecutor)
    assert executor.address == "tcp://h:1"
    local = resolve_executor("dask", _config(tmp_path, "[executor]\nworkers = 2\n"))
    assert local.settings() == {"cluster": "local", "workers": 2}  # type: ignore[attr-defined]


def test_an_executor_object_is_used_as_it_is(tmp_path: Path) -> None:
    given = ProcessExecutor(workers=1)
    assert resolve_executor(given, _config(tmp_path)) is given


@pytest.mark.parametrize(
    ("choice", "message"),
    [
        ("ray", "unknown executor 'ray'; choose one of inline, processes, dask"),
        ("processes=tcp://h:1", "only the dask executor takes an address"),
    ],
)
def test_a_bad_name_is_refused(tmp_path: Path, choice: str, message: str) -> None:
    with pytest.raises(ProjectError, match=message):
        resolve_executor(choice, _config(tmp_path))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[pipetrail]\nexecutor = "dask="\n', "'pipetrail.executor' must be"),
        ('[pipetrail]\nexecutor = "inline=x"\n', "'pipetrail.executor' must be"),
        ("[executor]\nworkers = 0\n", "'executor.workers' must be a whole number"),
        ('[executor]\nhost = "x"\n', "executor.host"),
    ],
)
def test_a_bad_executor_setting_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ProjectError, match=message):
        _config(tmp_path, text)


def test_pool_sizes_must_be_positive() -> None:
    with pytest.raises(ExecutorError, match="workers >= 1, got 0"):
        ProcessExecutor(workers=0)
    with pytest.raises(ExecutorError, match="workers >= 1, got -2"):
        DaskExecutor(workers=-2)


def test_retries_must_be_a_whole_number() -> None:
    with pytest.raises(DefinitionError, match="step 'f': retries must be a whole number"):

        @step(retries=-1)
        def f() -> int:
            return 1

    @step(retries=2)
    def g() -> int:
        return 1

    assert g.options.retries == 2


def _task(func) -> StepTask:  # type: ignore[no-untyped-def]
    return StepTask(
        node_id="n", step_name="local", func=func, kwargs={}, output_names=("o",), seed=0
    )


def test_a_function_defined_inside_another_cannot_be_sent() -> None:
    def local() -> int:
        return 1

    with pytest.raises(ExecutorError, match="step 'local' cannot be sent to a worker process"):
        encode_task(_task(local))


class _Unpicklable(Exception):
    def __init__(self, message: str, *, extra: object) -> None:
        super().__init__(message)
        self.extra = extra


def test_an_exception_that_does_not_pickle_comes_back_under_its_name() -> None:
    from pipetrail.execution.task import TaskResult

    error = _Unpicklable("bad thing", extra=lambda: 1)
    result = decode_result(encode_result(TaskResult(error=error)))
    assert isinstance(result.error, ShippedError)
    assert error_type_name(result.error) == "_Unpicklable"
    assert str(result.error) == "bad thing"


def test_a_step_of_the_main_script_cannot_be_sent() -> None:
    def main_func() -> int:
        return 1

    main_func.__module__ = "__main__"
    main_func.__qualname__ = "main_func"
    with pytest.raises(ExecutorError, match=r"defined in the script being run \(__main__\)"):
        encode_task(_task(main_func))


def test_a_task_the_worker_cannot_load_comes_back_as_the_steps_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipetrail.execution.executors import shipping
    from pipetrail.execution.executors.shipping import WorkerContext, run_shipped
    from pipetrail.store import default_registry
    from pipetrail.store.memory import MemoryStore

    context = WorkerContext(("local", str(tmp_path)), (), (), "unit-test-context")
    # As if this process were a worker that loaded the context already (loading it
    # redirects the process's stdout, which a test process must keep).
    monkeypatch.setitem(shipping._LOADED, context.key, (MemoryStore(), default_registry()))
    result = decode_result(run_shipped(context, b"not a pickled task", {}))
    assert isinstance(result.error, ExecutorError)
    assert "the worker could not load the step" in str(result.error)


class _InlineWithWorkers(InlineExecutor):
    """An inline executor that a subclass made concurrent."""

    def settings(self) -> dict[str, object]:
        return {"workers": 1}

    def start(self, context: object) -> None:
        return None

    def submit(self, task: object) -> object:
        return None

    def shutdown(self) -> None:
        return None


def test_is_concurrent_answers_as_the_protocol_check() -> None:
    plain = InlineExecutor()
    assert not is_concurrent(plain)
    assert is_concurrent(ProcessExecutor(workers=1))
    assert is_concurrent(_InlineWithWorkers())
    # An inline executor given the members on the object itself answers as isinstance.
    grown = InlineExecutor()
    for member in ("settings", "start", "submit", "shutdown"):
        setattr(grown, member, lambda *a: None)
    assert is_concurrent(grown)
