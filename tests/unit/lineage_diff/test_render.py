"""Human output of `pipetrail diff` for a synthetic diff with every section filled."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipetrail.cli.diff_cmd import _print_diff
from pipetrail.lineage.compare import Reason, Verdict
from pipetrail.lineage.diff import (
    Change,
    CodeDiff,
    MappingDiff,
    MetricDelta,
    RunDiff,
    StepDiff,
    diff_environments,
)

if TYPE_CHECKING:
    import pytest

EMPTY = MappingDiff({}, {}, {})


def _brief(run_id: str) -> dict[str, object]:
    return {
        "run_id": run_id,
        "pipeline": "toy",
        "status": "completed",
        "started_at": "2026-01-01T00:00:00Z",
    }


def test_every_section_is_printed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    env_a = {
        "python": {"version": "3.11.9"},
        "distributions": [{"name": "numpy", "version": "1.26.4"}],
    }
    env_b = {
        "python": {"version": "3.12.3"},
        "distributions": [{"name": "numpy", "version": "2.0.0"}],
    }
    source_diff = "--- a\n+++ b\n@@ -1 +1 @@\n-return 1\n+return 2\n"
    result = RunDiff(
        a=_brief("RUN_A"),
        b=_brief("RUN_B"),
        params=MappingDiff({"new": 1}, {"old": "x"}, {"C": Change(1.0, 0.5)}),
        run_seed=Change(0, 7),
        step_seeds={"evaluate": Change(11, 12)},
        sources=MappingDiff({}, {}, {"data/x.csv": Change("blake3:aaaa", "blake3:bbbb")}),
        steps=[
            StepDiff(
                "evaluate",
                "evaluate",
                "completed",
                "completed",
                ["code", "seed"],
                CodeDiff("blake3:1", "blake3:2", ["~ mod.evaluate: 1 -> 2"], source_diff),
                EMPTY,
                EMPTY,
            )
        ],
        environment=diff_environments(env_a, env_b),
        metrics=[MetricDelta("evaluate.acc", "evaluate", 0.5, 0.75, 0.25)],
        verdict=Verdict(
            False,
            (Reason("different_metric_definition", "step 'evaluate' changed", "evaluate"),),
        ),
    )
    _print_diff(result)
    out = capsys.readouterr().out
    for text in (
        "RUN_A",
        "verdict: not comparable",
        "different_metric_definition: step 'evaluate' changed",
        "C",
        "(absent)",
        "evaluate.acc",
        "+0.25",
        "data/x.csv",
        "python.version",
        "3.12.3",
        "package numpy",
        "2.0.0",
        "(run)",
        "code, seed",
        "~ mod.evaluate: 1 -> 2",
    ):
        assert text in out, text
    assert out.endswith(source_diff)
