"""What structured step logs add per step, when no trace exporter is configured.

A step's captured output is stored as JSON lines, each carrying the run id, step,
step-run id, trace id and span id (``pipetrail.capture.log_lines``); before, it was
stored as ``[stdout] ...`` text. In this process, interleaved, on the same step body
(one printed line and one logged warning; and a silent step), times N executions of:

* ``text``: capture the step's output and render it as the text log (what was done
  before structured logs);
* ``structured``: derive the step's ids, bind them to the logging context, attach the
  (disabled) OpenTelemetry context, capture, and encode the JSON lines with the ids
  (what ``execute_task`` does now).

Added per step = (structured - text) / N; target <= 0.1 ms.

Run: ``.venv/bin/python benchmarks/structured_logs.py [--quick]``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from _common import Result, log, main, summarize

from pipetrail.capture.log_context import StepTrace, bound, otel_attached
from pipetrail.capture.log_lines import encode_log
from pipetrail.capture.output import capture_output, logging_ready

if TYPE_CHECKING:
    from collections.abc import Callable

TARGET_MS = 0.1
STEPS = 2000
_LOGGER = logging.getLogger("bench.step")


def _talking() -> None:
    print("epoch 1 done: loss 0.25")
    _LOGGER.warning("loss went up by %s", 0.01)


def _silent() -> None:
    return None


def _text(body: Callable[[], None]) -> float:
    start = time.perf_counter()
    for _ in range(STEPS):
        with capture_output(tee=False) as captured:
            body()
        if not captured.is_empty:
            captured.text().encode("utf-8")
    return time.perf_counter() - start


def _structured(body: Callable[[], None]) -> float:
    start = time.perf_counter()
    for number in range(STEPS):
        trace = StepTrace("01RUNBENCHSTRUCTUREDLOGS0", "train", f"01STEPRUN{number:017d}")
        context = trace.log_context()
        with bound(context), otel_attached(trace), capture_output(tee=False) as captured:
            body()
        if not captured.is_empty:
            encode_log(captured.lines(), context).encode("utf-8")
    return time.perf_counter() - start


def run(quick: bool) -> list[Result]:
    reps = 5 if quick else 15
    log(f"structured_logs: {reps} x {STEPS} steps of each kind, interleaved")
    results = []
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    try:
        with logging_ready():  # as in a run: capture's logging installed once
            for name, body in (("talking", _talking), ("silent", _silent)):
                _text(body), _structured(body)  # warm-up
                added = []
                for _ in range(reps):
                    text = _text(body)
                    structured = _structured(body)
                    added.append((structured - text) / STEPS * 1000)
                what = (
                    "added per step: 1 printed line + 1 logged warning"
                    if name == "talking"
                    else "added per step: a step that writes nothing"
                )
                results.append(
                    summarize(f"structured_logs.{name}", what, added, "ms", at_most=TARGET_MS)
                )
    finally:
        root.setLevel(level)
    return results


if __name__ == "__main__":
    raise SystemExit(main(run, (__doc__ or "").splitlines()[0]))
