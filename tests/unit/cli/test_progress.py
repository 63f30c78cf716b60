"""The progress display counts a step executed again (its output was corrupt) once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipetrail.cli.progress import _LiveObserver, _PlainObserver

if TYPE_CHECKING:
    import pytest

# A run of 3 steps whose first step is a hit, then executes again when `train` finds its
# stored output corrupt; `train` and `score` then complete.
EVENTS = [
    ("prepare", "cached"),
    ("prepare", "completed"),
    ("train", "completed"),
    ("score", "completed"),
]


def test_plain_progress_shows_a_re_execution_without_counting_a_step(
    capsys: pytest.CaptureFixture[str],
) -> None:
    observer = _PlainObserver()
    observer.run_started(run_id="R", pipeline="p", steps_total=3)
    for node, status in EVENTS:
        observer.step_finished(node_id=node, status=status, seconds=0.0)
    observer.step_finished(node_id="train", status="failed", seconds=0.0)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        "run R of p: 3 steps",
        "  [1/3] prepare: cached",
        "  [1/3] prepare: re-executed 0.00s",
        "  [2/3] train: completed 0.00s",
        "  [3/3] score: completed 0.00s",
        "  [3/3] train: failed when re-executed",
    ]


def test_live_progress_counts_steps_once_and_re_executions_apart() -> None:
    observer = _LiveObserver()
    observer.total = 3
    seen = []
    for node, status in EVENTS:
        observer.step_finished(node_id=node, status=status, seconds=0.0)
        seen.append(observer._render().plain.split("  ")[:4])
    assert seen == [
        ["1/3 steps", "0 executed", "1 cached", ""],
        ["1/3 steps", "0 executed", "1 cached", "1 re-executed"],
        ["2/3 steps", "1 executed", "1 cached", "1 re-executed"],
        ["3/3 steps", "2 executed", "1 cached", "1 re-executed"],
    ]
    observer.step_finished(node_id="train", status="failed", seconds=0.0)
    shown = observer._render().plain
    assert shown.startswith("3/3 steps  1 executed  1 cached  1 re-executed  1 failed")


def test_live_progress_shows_every_step_running_at_once() -> None:
    observer = _LiveObserver()
    observer.total = 3
    observer.live.update = lambda *_: None  # type: ignore[method-assign]
    observer.step_started(node_id="left")
    observer.step_started(node_id="right")
    assert "running left, right" in observer._render().plain
    observer.step_finished(node_id="left", status="completed", seconds=0.0)
    shown = observer._render().plain
    assert "running right" in shown
    assert "left," not in shown
