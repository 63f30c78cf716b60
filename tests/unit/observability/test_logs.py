"""pipetrail's own log lines rendered by structlog, with the ids of the run or step."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from pipetrail.capture.log_context import LogContext, StepTrace, bound
from pipetrail.errors import ProjectError
from pipetrail.observability.logs import configure_logging

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def clean_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers = list(root.handlers)
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)


@pytest.mark.usefixtures("clean_root")
def test_json_lines_carry_the_ids_of_the_run_or_step() -> None:
    out = io.StringIO()
    configure_logging("json", out)
    log = logging.getLogger("pipetrail.test.own")
    log.warning("outside any run")
    with bound(LogContext.for_run("01RUN")):
        log.warning("in the run")
        with bound(StepTrace("01RUN", "train", "01SR").log_context()):
            log.error("in a step: %d", 3, extra={"rows": 5})
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["outside any run", "in the run", "in a step: 3"]
    assert "run_id" not in lines[0]
    assert lines[1]["run_id"] == "01RUN"
    assert lines[1]["step"] is None
    assert lines[1]["span_id"] == LogContext.for_run("01RUN").span_id
    step = lines[2]
    assert (step["step"], step["step_run_id"], step["level"]) == ("train", "01SR", "error")
    assert step["trace_id"] == lines[1]["trace_id"]
    assert step["logger"] == "pipetrail.test.own"
    assert step["timestamp"].endswith("Z")


@pytest.mark.usefixtures("clean_root")
def test_console_lines_and_a_second_call_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", first)
    configure_logging("console", second)
    with bound(LogContext.for_run("01RUN")):
        logging.getLogger("pipetrail.test.own").warning("once")
    assert first.getvalue() == ""
    assert "once" in second.getvalue()
    assert "run_id=01RUN" in second.getvalue()


def test_bad_formats_and_a_missing_structlog_are_said_clearly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ProjectError, match="unknown log format 'xml'; choose one of console"):
        configure_logging("xml")
    monkeypatch.setitem(sys.modules, "structlog", None)
    with pytest.raises(ProjectError, match=r"needs structlog; pip install 'pipetrail\[obs"):
        configure_logging("json")


def test_the_command_line_loads_neither_structlog_nor_opentelemetry_by_default() -> None:
    code = (
        "import sys\nfrom pipetrail.cli.main import cli\n"
        "try:\n    cli(['--help'], prog_name='pipetrail')\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('structlog', 'opentelemetry'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_the_command_takes_its_log_handler_off_when_it_ends(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pipetrail.cli.main import cli

    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    for n in range(2):  # in one process, as a notebook or click's runner does
        result = CliRunner().invoke(cli, ["--log-format", "json", "init", str(tmp_path / f"p{n}")])
        assert result.exit_code == 0, result.output
        assert (list(root.handlers), root.level) == before
    mine = configure_logging("console", io.StringIO())  # the caller's own, kept
    try:
        result = CliRunner().invoke(cli, ["--log-format", "json", "init", str(tmp_path / "p2")])
        assert result.exit_code == 0, result.output
        assert root.handlers == [*before[0], mine]
    finally:
        root.removeHandler(mine)
