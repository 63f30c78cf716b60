"""``audit verify`` pauses the cyclic garbage collector from the walk to the report.

Resumed right after the walk, the collector's first pass went over every row the walk
had modelled, and the comparison and the caller's check paid hundreds of passes more;
paused until the report is made, it costs none of that. It must be running again after
the audit (or stay paused, when the caller had paused it), whatever the audit found.
"""

from __future__ import annotations

import gc
from typing import TYPE_CHECKING, Any

import pytest

from pipetrail.ledger import audit, audit_parallel
from tests.contract.test_ledger import _exec
from tests.integration.test_audit_parallel import _ledger

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def collecting() -> Any:
    """The collector running, as a program has it; as it was after the test."""
    was = gc.isenabled()
    gc.enable()
    yield
    if not was:
        gc.disable()


def _watched(monkeypatch: pytest.MonkeyPatch) -> tuple[audit.Meanwhile[bool], list[bool]]:
    """A check meanwhile, and the own comparison, noting whether the collector runs."""
    seen: list[bool] = []
    compare_own = audit._compare_own

    def compare(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return compare_own(*args, **kwargs)

    monkeypatch.setattr(audit, "_compare_own", compare)

    def check(db: Any) -> bool:
        seen.append(gc.isenabled())
        return True

    return audit.Meanwhile(check), seen


@pytest.mark.usefixtures("collecting")
@pytest.mark.parametrize("beside", [True, False])
def test_the_collector_is_paused_until_the_report_and_runs_again_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, beside: bool
) -> None:
    monkeypatch.setattr(audit_parallel, "PARALLEL_FROM", 0 if beside else 1 << 62)
    ledger = _ledger(tmp_path)
    meanwhile, seen = _watched(monkeypatch)
    assert ledger.verify(meanwhile=meanwhile).ok
    assert seen == ([False, False] if beside else [False])
    assert gc.isenabled()
    # An edited row: the model refuses, everything is walked again; still paused, and
    # running again after.
    _exec(ledger, "UPDATE events SET actor = 'mallory' WHERE seq = 3")
    meanwhile, seen = _watched(monkeypatch)
    assert ledger.verify(meanwhile=meanwhile).first_bad_seq == 3
    assert gc.isenabled()
    ledger.close()


def test_a_collector_paused_by_the_caller_stays_paused(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path)
    was = gc.isenabled()
    gc.disable()
    try:
        assert ledger.verify().ok
        assert not gc.isenabled()
    finally:
        if was:
            gc.enable()
    ledger.close()
