"""Structured step logs: ids, the stored JSON-lines form, and old text logs read back."""

from __future__ import annotations

import json
import logging
import re

import pytest

from pipetrail.capture.log_context import (
    LogContext,
    StepTrace,
    bound,
    current_context,
    run_span_id,
    step_span_id,
    trace_id_for,
    traceparent,
)
from pipetrail.capture.log_lines import decode_log, encode_log, render_text
from pipetrail.capture.output import capture_output

_HEX = re.compile(r"[0-9a-f]+")


def test_ids_are_w3c_shaped_derived_and_distinct() -> None:
    trace = trace_id_for("01RUN")
    assert len(trace) == 32
    assert _HEX.fullmatch(trace)
    assert trace == trace_id_for("01RUN")  # derived: anyone with the record names it
    assert trace != trace_id_for("01RUN2")
    span = step_span_id("01STEP")
    assert len(span) == 16
    assert _HEX.fullmatch(span)
    # A run id and a step-run id that happen to be equal still name different spans.
    assert run_span_id("01X") != step_span_id("01X")
    assert traceparent(trace, span) == f"00-{trace}-{span}-01"


def test_bound_context_nests_and_is_restored() -> None:
    assert current_context() is None
    run = LogContext.for_run("01RUN")
    with bound(run):
        assert current_context() is run
        step = StepTrace("01RUN", "train", "01SR").log_context()
        with bound(step):
            assert current_context() == step
            assert step.trace_id == run.trace_id
            assert step.span_id == step_span_id("01SR")
        with bound(None):  # None keeps what is bound
            assert current_context() is run
        assert current_context() is run
    assert current_context() is None


def _captured(context: LogContext | None) -> tuple[str, str]:
    logger = logging.getLogger("pipetrail.test.steplog")
    with bound(context), capture_output(tee=False) as out:
        print("epoch 1 done")
        logger.warning("loss is %s", "NaN", extra={"epoch": 1, "odd": object})
        try:
            raise ValueError("bad")
        except ValueError:
            logger.exception("failed")
        logger.error({"event": "structured", "rows": 3})  # structlog's wrap_for_formatter
    return out.text(), encode_log(out.lines(), context)


def test_every_stored_line_carries_the_ids_and_its_fields() -> None:
    context = StepTrace("01RUN", "train", "01SR").log_context()
    _, stored = _captured(context)
    lines = [json.loads(line) for line in stored.splitlines()]
    assert [line["stream"] for line in lines] == ["stdout", "log", "log", "log"]
    for line in lines:
        assert {k: line[k] for k in context.fields()} == context.fields()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", line["timestamp"])
    out, warning, failure, structured = lines
    assert out["event"] == "epoch 1 done"
    assert "level" not in out
    assert warning["level"] == "warning"
    assert warning["logger"] == "pipetrail.test.steplog"
    assert warning["event"] == "loss is NaN"
    assert warning["epoch"] == 1  # extra= fields are kept as fields
    assert warning["odd"] == str(object)  # ...as text when they are not JSON
    assert "ValueError: bad" in failure["exception"]
    assert structured["event"] == "structured"
    assert structured["rows"] == 3


def test_the_stored_lines_read_back_as_the_text_log() -> None:
    logger = logging.getLogger("pipetrail.test.steplog")
    with capture_output(tee=False) as out:
        print("epoch 1 done", end="\r\nhalf a line")
        logger.warning("two\nlines")
        try:
            raise ValueError("bad")
        except ValueError:
            logger.exception("failed")
    stored = encode_log(out.lines(), None).encode()
    assert render_text(stored) == out.text()
    assert decode_log(stored)[0]["event"] == "epoch 1 done"


def test_extra_fields_follow_the_message_in_the_text_form() -> None:
    _, stored = _captured(None)
    text = render_text(stored.encode())
    assert "loss is NaN epoch=1 odd=<class 'object'>\n" in text
    assert ": structured rows=3\n" in text


def test_lines_outside_a_run_have_null_ids() -> None:
    _, stored = _captured(None)
    first = json.loads(stored.splitlines()[0])
    assert first["run_id"] is None
    assert first["trace_id"] is None


def test_an_empty_capture_stores_nothing() -> None:
    with capture_output(tee=False) as out:
        pass
    assert encode_log(out.lines(), None) == ""


def test_an_old_text_log_is_read_as_lines() -> None:
    old = (
        b"[stdout] epoch 1 done\n"
        b"[log] 2024-05-01 12:00:00,123 WARNING train: loss is NaN\n"
        b"[stderr] 50%\n"
        b"[log] Traceback (most recent call last):\n"
        b"not a marked line\n"
    )
    lines = decode_log(old)
    assert lines[0] == {"stream": "stdout", "event": "epoch 1 done"}
    assert lines[1]["level"] == "warning"
    assert lines[1]["logger"] == "train"
    assert lines[1]["event"] == "loss is NaN"
    assert lines[1]["timestamp"].endswith("Z")
    assert lines[2] == {"stream": "stderr", "event": "50%"}
    assert lines[3] == {"stream": "log", "event": "Traceback (most recent call last):"}
    assert lines[4] == {"stream": "stdout", "event": "not a marked line"}
    assert render_text(old) == old.decode()  # shown exactly as it was stored


@pytest.mark.parametrize("raw", [b'{"stream": "stdout", "event": "ok"}\n{broken\n'])
def test_a_damaged_json_line_is_kept_as_text(raw: bytes) -> None:
    lines = decode_log(raw)
    assert lines == [{"stream": "stdout", "event": "ok"}, {"stream": "stdout", "event": "{broken"}]
