"""The line that ends ``pipetrail run``: plain off a terminal, the status colored on one."""

from __future__ import annotations

import pytest

from pipetrail.cli.render import print_run_done

SUMMARY = {
    "run_id": "01ABC",
    "status": "completed",
    "steps_total": 3,
    "steps": [{"status": "completed"}, {"status": "cached"}, {"status": "cached"}],
}


@pytest.fixture(autouse=True)
def no_color_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)


def test_off_a_terminal_the_line_is_plain(capsys: pytest.CaptureFixture[str]) -> None:
    print_run_done(SUMMARY)
    assert capsys.readouterr().out == "run 01ABC completed: 1 executed, 2 cached of 3 steps\n"


def test_force_color_colors_the_status(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    print_run_done({**SUMMARY, "status": "failed"})
    assert capsys.readouterr().out == (
        "run 01ABC \x1b[31mfailed\x1b[0m: 1 executed, 2 cached of 3 steps\n"
    )


def test_no_color_wins(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    print_run_done(SUMMARY)
    assert "\x1b" not in capsys.readouterr().out
