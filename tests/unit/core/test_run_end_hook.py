"""The run-end hook: installed by the package root, called after every run, never fatal."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pipetrail
from pipetrail.core import run_end

if TYPE_CHECKING:
    import pytest


def test_the_package_root_installs_the_alerts_hook() -> None:
    [hook] = run_end._hooks
    assert hook is pipetrail._run_end_alerts


def test_a_failing_hook_is_logged_and_never_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[tuple[Any, str, str]] = []

    def hook(project: Any, run_id: str, status: str) -> None:
        seen.append((project, run_id, status))
        raise RuntimeError("the webhook library broke")

    monkeypatch.setattr(run_end, "_hooks", [])
    run_end.install_run_end_hook(hook)
    with caplog.at_level(logging.WARNING, logger="pipetrail.core.run_end"):
        run_end.run_ended("project", "r1", "failed")
    assert seen == [("project", "r1", "failed")]
    assert "after run r1: the webhook library broke" in caplog.text


def test_the_last_installed_hook_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(run_end, "_hooks", [])
    run_end.install_run_end_hook(lambda *_: calls.append("first"))
    run_end.install_run_end_hook(lambda *_: calls.append("second"))
    run_end.run_ended(None, "r1", "completed")
    assert calls == ["second"]
