"""What a step task binds while user code runs, and that it is put back afterwards."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.capture.log_context import LogContext, StepTrace, bound, current_context
from pipetrail.execution.metrics import current_recorder, log_metric
from pipetrail.execution.task import StepTask, execute_task
from pipetrail.store import LocalStore
from pipetrail.store.serializers.registry import SerializerRegistry

if TYPE_CHECKING:
    from pathlib import Path


def _task(func: Any, trace: StepTrace | None) -> StepTask:
    return StepTask(
        node_id="node",
        step_name="node",
        func=func,
        kwargs={},
        output_names=("output",),
        seed=7,
        trace=trace,
    )


@pytest.mark.parametrize("raises", [False, True])
def test_the_steps_log_context_and_recorder_are_bound_for_the_call_only(
    tmp_path: Path, raises: bool
) -> None:
    seen: dict[str, Any] = {}

    def func() -> int:
        seen["context"] = current_context()
        seen["recorder"] = current_recorder()
        log_metric("loss", 0.5)
        if raises:
            raise ValueError("no")
        return 1

    trace = StepTrace("run-1", "node", "steprun-1")
    outer = LogContext.for_run("run-1")
    store = LocalStore(tmp_path / "objects")
    with bound(outer):
        result = execute_task(_task(func, trace), store, SerializerRegistry.with_builtins())
        assert current_context() is outer  # the run's own context again
    assert current_recorder() is None
    assert seen["context"] == trace.log_context()
    assert seen["recorder"] is not None
    assert set(result.metrics) == {"loss"}  # logged through the bound recorder
    assert (result.error is not None) is raises


def test_a_task_without_a_trace_keeps_the_current_log_context(tmp_path: Path) -> None:
    seen: list[LogContext | None] = []
    outer = LogContext.for_run("run-2")
    store = LocalStore(tmp_path / "objects")
    with bound(outer):
        execute_task(
            _task(lambda: seen.append(current_context()), None),
            store,
            SerializerRegistry.with_builtins(),
        )
        assert current_context() is outer
    assert seen == [outer]
    assert current_recorder() is None
