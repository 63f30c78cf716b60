"""How metric series and reports are listed among a step run's outputs."""

from __future__ import annotations

from pipetrail.execution.metrics import StoredSeries
from pipetrail.execution.records import (
    is_recorded_output,
    recorded_artifacts,
    split_recorded,
    with_recorded,
)
from pipetrail.store import StoredArtifact


def artifact(digest: str) -> StoredArtifact:
    return StoredArtifact(digest=digest, blob=digest, serializer="npy", type_name="t", size=1)


def test_outputs_round_trip_through_prefixes() -> None:
    series = StoredSeries(artifact("s"), artifact("t"), {"count": 1})
    report = artifact("r")
    merged = with_recorded({"output": "o"}, {"train/loss": series}, {"eval/roc": report})
    assert merged == {"output": "o", "metric:train/loss": "s", "report:eval/roc": "r"}
    assert split_recorded(merged) == ({"train/loss": "s"}, {"eval/roc": "r"})
    assert [n for n in merged if not is_recorded_output(n)] == ["output"]
    assert recorded_artifacts({"train/loss": series}, {"eval/roc": report}) == [
        (series.series, "metric"),
        (series.timestamps, "metric-timestamps"),
        (report, "report"),
    ]


def test_the_shared_timestamps_object_is_listed_once() -> None:
    times = artifact("t")
    metrics = {
        "a": StoredSeries(artifact("sa"), times, {"count": 2}, 0),
        "b": StoredSeries(artifact("sb"), times, {"count": 1}, 2),
    }
    assert recorded_artifacts(metrics, {}) == [
        (metrics["a"].series, "metric"),
        (metrics["b"].series, "metric"),
        (times, "metric-timestamps"),
    ]
