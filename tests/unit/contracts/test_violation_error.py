"""ContractViolationError: a StepFailedError that survives being sent between processes."""

from __future__ import annotations

import pickle  # noqa: TID251 - checks how processes executors send the error

from pipetrail import ContractViolationError, StepFailedError


def test_it_is_a_step_failure_and_pickles_with_its_report() -> None:
    error = ContractViolationError(
        "step 'clean': input 'df' breaks its contract",
        step="clean",
        run_id="01RUN",
        step_run_id="01STEP",
        report={"ok": False},
        report_digest="blake3:" + "0" * 64,
    )
    assert isinstance(error, StepFailedError)
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object, round trip
    assert str(copy) == str(error)
    assert (copy.step, copy.run_id, copy.step_run_id) == ("clean", "01RUN", "01STEP")
    assert copy.report == {"ok": False}
    assert copy.report_digest == error.report_digest
