"""The metric recorder: validation, step indexes, namespacing, the stored series format."""

from __future__ import annotations

import contextvars
import io
import math
import threading
from array import array
from fractions import Fraction
from typing import TYPE_CHECKING

import pytest

from pipetrail import log_metric, log_metrics
from pipetrail.errors import DefinitionError, SerializationError
from pipetrail.execution.metrics import (
    MAX_NAME_LENGTH,
    StepRecorder,
    active_recorder,
    decode_series,
    encode_series,
    encode_timestamps,
    recording,
    series_timestamps,
    validate_name,
)
from pipetrail.hashing.canonical import is_plain
from pipetrail.store import MemoryStore, SerializerRegistry

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def recorder(store: MemoryStore) -> Iterator[StepRecorder]:
    rec = StepRecorder("train", store, SerializerRegistry.with_builtins())
    with recording(rec):
        yield rec


def points(recorder: StepRecorder) -> dict[str, list[tuple[int, float]]]:
    stored = recorder.store_series()
    out = {}
    for name, series in stored.items():
        steps, values = decode_series(recorder.store.get_bytes(series.series.blob))
        out[name] = list(zip(steps, values, strict=True))
    return out


# -- outside a step ------------------------------------------------------------------------


def test_logging_outside_a_step_raises_definition_error() -> None:
    with pytest.raises(DefinitionError, match=r"log_metric\(\) was called outside a running step"):
        log_metric("train/loss", 1.0)
    with pytest.raises(DefinitionError, match=r"log_metrics\(\) was called outside"):
        log_metrics({"train/loss": 1.0})
    with pytest.raises(DefinitionError, match="attach_report"):
        active_recorder("attach_report")


def test_the_recorder_is_unbound_after_the_block(store: MemoryStore) -> None:
    rec = StepRecorder("s", store, SerializerRegistry.with_builtins())
    with recording(rec):
        log_metric("a", 1.0)
    with pytest.raises(DefinitionError):
        log_metric("a", 2.0)
    assert points(rec) == {"a": [(0, 1.0)]}


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["loss", "train/loss", "eval/auc", "a.b-c_d/E9", "x/y/z", "v1.2/top-5_acc"]
)
def test_valid_names(name: str) -> None:
    assert validate_name(name, "metric") == name


@pytest.mark.parametrize(
    "name",
    ["", "/loss", "train/", "train//loss", "train loss", "train/lo$s", "é", "a/./b", "..", "a/.."],
)
def test_invalid_names_are_refused_clearly(recorder: StepRecorder, name: str) -> None:
    with pytest.raises(DefinitionError, match=r"metric name .* is not valid; use segments"):
        log_metric(name, 1.0)
    assert recorder.names == []


def test_name_length_and_type(recorder: StepRecorder) -> None:
    log_metric("a" * MAX_NAME_LENGTH, 1.0)
    with pytest.raises(DefinitionError, match="at most 150 characters"):
        log_metric("a" * (MAX_NAME_LENGTH + 1), 1.0)
    with pytest.raises(DefinitionError, match="is a int; give a string"):
        log_metric(3, 1.0)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="is a list; give a string"):
        log_metric(["a"], 1.0)  # type: ignore[arg-type]


def test_names_are_namespaced_series(recorder: StepRecorder) -> None:
    log_metric("train/loss", 0.5)
    log_metric("eval/loss", 0.7)
    log_metric("train/loss", 0.4)
    assert recorder.names == ["train/loss", "eval/loss"]
    assert points(recorder) == {"train/loss": [(0, 0.5), (1, 0.4)], "eval/loss": [(0, 0.7)]}


# -- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False])
def test_bools_are_refused(recorder: StepRecorder, value: bool) -> None:
    with pytest.raises(DefinitionError, match="is a bool, not a number"):
        log_metric("flag", value)


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, float("nan"), 10**400, "0.5", None, [1.0], 1j]
)
def test_non_finite_and_non_real_values_are_refused(recorder: StepRecorder, value: object) -> None:
    with pytest.raises(DefinitionError, match="metric 'm'"):
        log_metric("m", value)  # type: ignore[arg-type]
    assert recorder.names == []  # a refused first point creates no series


def test_ints_and_fractions_are_stored_as_floats(recorder: StepRecorder) -> None:
    log_metric("m", 3)
    log_metric("m", Fraction(1, 4))  # type: ignore[arg-type] # any numbers.Real is accepted
    log_metric("m", -0.0)
    assert points(recorder) == {"m": [(0, 3.0), (1, 0.25), (2, -0.0)]}


def test_numpy_scalars_are_accepted_and_numpy_bools_refused(recorder: StepRecorder) -> None:
    import numpy as np  # part of the test install (the tables extra)

    log_metric("m", np.float32(0.5))
    log_metric("m", np.float64(0.25), step=np.int64(7))
    log_metric("m", np.int32(2), step=np.uint8(9))
    with pytest.raises(DefinitionError, match="is a bool"):
        log_metric("m", np.bool_(True))
    with pytest.raises(DefinitionError, match="not finite"):
        log_metric("m", np.float64("nan"))
    with pytest.raises(DefinitionError, match=r"call \.item\(\)"):
        log_metric("m", np.array([1.0]))
    assert points(recorder) == {"m": [(0, 0.5), (7, 0.25), (9, 2.0)]}


# -- step indexes ----------------------------------------------------------------------------


def test_step_auto_increments_per_name_and_follows_explicit_steps(recorder: StepRecorder) -> None:
    log_metric("a", 1.0)
    log_metric("a", 2.0)
    log_metric("b", 3.0)
    log_metric("a", 4.0, step=10)
    log_metric("a", 5.0)
    log_metric("a", 6.0, step=0)  # explicit steps may go back (e.g. a new epoch's batches)
    assert points(recorder) == {
        "a": [(0, 1.0), (1, 2.0), (10, 4.0), (11, 5.0), (0, 6.0)],
        "b": [(0, 3.0)],
    }


@pytest.mark.parametrize(
    ("step", "message"),
    [(-1, "out of range"), (2**63, "out of range"), (1.0, "is not an int"), (True, "is a bool")],
)
def test_bad_steps_are_refused(recorder: StepRecorder, step: object, message: str) -> None:
    with pytest.raises(DefinitionError, match=message):
        log_metric("a", 1.0, step=step)  # type: ignore[arg-type]


def test_log_metrics_shares_the_step_and_is_all_or_nothing(recorder: StepRecorder) -> None:
    log_metrics({"eval/auc": 0.9, "eval/acc": 0.8}, step=5)
    log_metrics({"eval/auc": 0.91, "eval/acc": 0.81})
    with pytest.raises(DefinitionError, match="not finite"):
        log_metrics({"eval/auc": 0.92, "eval/acc": math.nan})
    with pytest.raises(DefinitionError, match="not valid"):
        log_metrics({"eval/auc": 0.92, "bad name": 1.0})
    with pytest.raises(DefinitionError, match="log_metrics: step -2 is out of range"):
        log_metrics({"eval/auc": 0.92}, step=-2)
    with pytest.raises(DefinitionError, match="expects a dict"):
        log_metrics([("eval/auc", 0.92)])  # type: ignore[arg-type]
    assert points(recorder) == {
        "eval/auc": [(5, 0.9), (6, 0.91)],
        "eval/acc": [(5, 0.8), (6, 0.81)],
    }


# -- timestamps, threads ---------------------------------------------------------------------


def test_timestamps_are_monotonic_ns_since_the_start(recorder: StepRecorder) -> None:
    for i in range(100):
        log_metric("m", float(i))
    stored = recorder.store_series()["m"]
    data = recorder.store.get_bytes(stored.timestamps.blob)
    assert data.startswith(b"\x93NUMPY\x01\x00")
    times = array("q", data[-800:])
    assert list(times) == sorted(times)
    assert times[0] >= 0
    assert stored.timestamps.meta["unit"] == "ns since the step function was called"


def test_threads_log_only_in_a_copied_context(recorder: StepRecorder) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for i in range(1000):
                log_metric("t", float(i))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    plain = threading.Thread(target=work)
    plain.start()
    plain.join()
    assert len(errors) == 1
    assert isinstance(errors[0], DefinitionError)
    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(work,)) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 1
    series = points(recorder)["t"]
    assert len(series) == 4000
    assert sorted(v for _, v in series) == sorted(float(i) for i in range(1000) for _ in range(4))


# -- stored series ---------------------------------------------------------------------------


def test_series_bytes_are_deterministic_and_exclude_timestamps(store: MemoryStore) -> None:
    digests = set()
    for _ in range(2):
        rec = StepRecorder("s", store, SerializerRegistry.with_builtins())
        with recording(rec):
            for i in range(50):
                log_metric("m", i / 7)
        digests.add(rec.store_series()["m"].series.digest)
    assert len(digests) == 1


def test_stored_series_record_and_summary(recorder: StepRecorder) -> None:
    for value in (3.0, 1.0, 2.0):
        log_metric("m", value)
    stored = recorder.store_series()["m"]
    assert stored.summary == {"count": 3, "min": 1.0, "max": 3.0, "last": 2.0}
    assert stored.series.serializer == "npy"
    assert stored.series.meta == {
        "dtype": "[('step', '<i8'), ('value', '<f8')]",
        "shape": [3],
        "scalar": False,
        "summary": stored.summary,
    }
    ref = stored.reference()
    assert ref == {
        **stored.summary,
        "digest": stored.series.digest,
        "timestamps": stored.timestamps.digest,
        "timestamps_at": 0,
    }
    without = stored.reference(with_timestamps=False)
    assert "timestamps" not in without
    assert "timestamps_at" not in without


def test_a_step_runs_series_share_one_timestamps_object(
    recorder: StepRecorder, store: MemoryStore
) -> None:
    log_metrics({"a": 1.0, "b": 2.0})
    log_metric("a", 3.0)
    log_metric("c", 4.0)
    log_metrics({"b": 5.0, "c": 6.0})
    stored = recorder.store_series()
    assert {s.timestamps.digest for s in stored.values()} == {stored["a"].timestamps.digest}
    assert [stored[n].timestamps_at for n in ("a", "b", "c")] == [0, 2, 4]
    data = store.get_bytes(stored["a"].timestamps.blob)
    assert stored["a"].timestamps.meta["shape"] == [6]
    per_series = {n: series_timestamps(s.reference(), data) for n, s in stored.items()}
    assert {n: len(t) for n, t in per_series.items()} == {"a": 2, "b": 2, "c": 2}
    # Each series' timestamps are its own points, in logging order: "a" logged first,
    # then "c", then "b" and "c" again.
    assert per_series["a"][0] <= per_series["a"][1] <= per_series["c"][0]
    assert per_series["c"][0] <= per_series["b"][1] <= per_series["c"][1]
    import numpy as np  # part of the test install (the tables extra)

    loaded = np.load(io.BytesIO(data))
    assert loaded.dtype == np.int64
    assert loaded.tolist() == [*per_series["a"], *per_series["b"], *per_series["c"]]


def test_a_step_that_logged_nothing_stores_nothing(
    recorder: StepRecorder, store: MemoryStore
) -> None:
    assert recorder.store_series() == {}
    assert list(store.iter_digests()) == []


def test_series_timestamps_reads_the_older_one_object_per_series_layout() -> None:
    stamps = array("q", [5, 17, 40])
    data = encode_timestamps([stamps])
    # An event recorded before the shared layout: no ``timestamps_at``.
    assert series_timestamps({"count": 3}, data) == stamps
    assert series_timestamps({"count": 1, "timestamps_at": 2}, data) == array("q", [40])


@pytest.mark.parametrize(
    ("reference", "data"),
    [
        ({"count": 4}, encode_timestamps([array("q", [1, 2, 3])])),
        ({"count": 1, "timestamps_at": 3}, encode_timestamps([array("q", [1, 2, 3])])),
        ({"count": 1, "timestamps_at": -1}, encode_timestamps([array("q", [1, 2, 3])])),
        ({"count": 1}, encode_series(array("q", [0]), array("d", [1.0]))),
        ({"count": 1}, b"not npy"),
        ({"count": 3}, encode_timestamps([array("q", [1, 2, 3])])[:-1]),
    ],
)
def test_series_timestamps_refuses_what_does_not_fit(reference: dict, data: bytes) -> None:
    with pytest.raises(SerializationError, match="not the timestamps of this metric series"):
        series_timestamps(reference, data)


def test_encode_decode_round_trip_and_numpy_compatibility() -> None:
    steps = array("q", [0, 1, 5, 2**62])
    values = array("d", [0.5, -1e300, 5e-324, 3.0])
    data = encode_series(steps, values)
    assert (len(data) - 16 * 4) % 64 == 0  # the header is padded like numpy pads it
    got_steps, got_values = decode_series(data)
    assert got_steps == steps
    assert got_values == values
    import numpy as np  # part of the test install (the tables extra)

    loaded = np.load(io.BytesIO(data), allow_pickle=False)
    assert loaded.dtype == np.dtype([("step", "<i8"), ("value", "<f8")])
    assert loaded["step"].tolist() == list(steps)
    assert loaded["value"].tolist() == list(values)
    buffer = io.BytesIO()
    np.save(buffer, loaded)
    assert buffer.getvalue() == data  # byte-identical to what numpy itself writes


@pytest.mark.parametrize("count", [1, 2, 31, 32, 33, 100])
def test_short_and_long_series_encode_as_numpy_writes_them(count: int) -> None:
    # Up to a few dozen points a series is packed record by record, beyond that through
    # interleaved arrays: both must give the bytes numpy writes.
    steps = array("q", [(k * 7919) % (2**63 - 1) for k in range(count)])
    values = array("d", [(-1.0) ** k * k / 3 for k in range(count)])
    values[0] = -0.0
    data = encode_series(steps, values)
    import numpy as np  # part of the test install (the tables extra)

    expected = np.zeros(count, dtype=[("step", "<i8"), ("value", "<f8")])
    expected["step"] = list(steps)
    expected["value"] = list(values)
    buffer = io.BytesIO()
    np.save(buffer, expected)
    assert data == buffer.getvalue()
    assert decode_series(data) == (steps, values)


@pytest.mark.parametrize(
    ("values", "plain"),
    [([1.0, 2.5], True), ([0.0], True), ([1e-5, 2.0], False), ([3.0, 1e16], False)],
)
def test_a_series_is_plain_when_its_summary_is(
    recorder: StepRecorder, values: list[float], plain: bool
) -> None:
    # Plain: what orjson writes as the reference encoder does (floats without exponent),
    # which lets the series' events skip walking its meta and reference again.
    for value in values:
        log_metric("m", value)
    stored = recorder.store_series()["m"]
    assert stored.plain is plain
    assert is_plain(stored.series.meta) is plain
    assert is_plain(stored.reference()) is plain
    assert is_plain(stored.timestamps.meta)


def test_log_metrics_records_what_log_metric_records(store: MemoryStore) -> None:
    # log_metrics appends its points itself (checked once): the same series, step
    # indexes and values as logging each point with log_metric.
    stored = {}
    for many in (False, True):
        rec = StepRecorder("s", store, SerializerRegistry.with_builtins())
        with recording(rec):
            for i in range(3):
                row = {"a": float(i), "b": i + 1, "c/d": Fraction(i, 3), _Name("e"): 1.5}
                if many:
                    log_metrics(row)
                    log_metrics({"a": 9.0}, step=10 + i)
                else:
                    for name, value in row.items():
                        log_metric(name, value)
                    log_metric("a", 9.0, step=10 + i)
        stored[many] = {n: (s.series.digest, s.summary) for n, s in rec.store_series().items()}
        assert all(type(name) is str for name in rec.names)
    assert stored[True] == stored[False]
    assert list(stored[True]) == ["a", "b", "c/d", "e"]


class _Name(str):
    """A str subclass: a metric name is recorded as the plain string."""

    __slots__ = ()


def test_empty_series_encodes() -> None:
    data = encode_series(array("q"), array("d"))
    assert decode_series(data) == (array("q"), array("d"))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not npy at all",
        encode_series(array("q", [1]), array("d", [1.0]))[:-1],
        encode_series(array("q", [1]), array("d", [1.0])).replace(b"'<i8'", b"'<i4'"),
    ],
)
def test_decoding_refuses_other_bytes(data: bytes) -> None:
    with pytest.raises(SerializationError, match="not a pipetrail metric series"):
        decode_series(data)
