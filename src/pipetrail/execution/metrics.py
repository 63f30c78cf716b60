"""Metric series logged by step code: ``log_metric``, ``log_metrics`` and their recorder.

Owns the :class:`StepRecorder` that :func:`~pipetrail.execution.task.execute_task` binds
to a context variable for the duration of one step call, the public logging functions, the
validation of metric (and report) names, and the decision of how series are stored (the
bytes themselves: :mod:`pipetrail.execution.metric_format`, whose functions it re-exports).
Must not import the ledger, the CLI or any heavy library (numpy is never imported here).

Logging is cheap: a point is three appends to ``array`` buffers kept per metric name (a
step index, a float64 value and a timestamp); nothing is written and no Python object is
kept per point until the step ends. A name is validated once, when it is first logged.

**Names** are namespaced with ``/`` (``train/loss``, ``eval/auc``): one or more segments
of letters, digits, ``_``, ``-`` and ``.`` (a segment may not be ``.`` or ``..``), at most
:data:`MAX_NAME_LENGTH` characters. **Values** are finite real numbers stored as float64
(``bool`` is refused; numpy scalars are accepted). **Step indexes** are non-negative ints;
when omitted, a point gets the previous point's index of the same name plus one (0 for the
first point). **Timestamps** are nanoseconds elapsed since the step function was called,
from a monotonic clock (``time.perf_counter_ns``); the step run's ``started_at`` gives the
wall-clock time of the start.

**Storage decision.** At step end every name becomes an artifact and a slice of another:

* the *series* (role ``metric``): the points' step indexes and values, and nothing else,
  as an NPY 1.0 file holding a one-dimensional structured array of dtype
  ``[('step', '<i8'), ('value', '<f8')]``, one record per point in logging order. Its
  digest is what the step run references, what ``pipetrail check`` compares and what a
  cache hit reuses: the same points give the same bytes, hence the same digest, on every
  run and machine, so reruns deduplicate;
* the *timestamps* (role ``metric-timestamps``): an NPY 1.0 array of ``'<i8'``, one per
  point. Timestamps differ on every run, which is why they are kept out of the series: in
  it they would make every rerun a new artifact and every reproduced series look changed.
  One such object holds the timestamps of every series the step run logged, one series
  after another; a series' reference in the step's event names the object
  (``timestamps``) and where its points start in it (``timestamps_at``; its ``count``
  gives how many). Events recorded before this layout have no ``timestamps_at``: their
  object holds that series' timestamps alone (:func:`series_timestamps` reads both).
  One object per step run rather than per series: each object costs an artifact record,
  a ledger event and their index entries, which dominated the cost of recording a
  handful of metrics (ADR 0033).

NPY rather than Parquet or JSON: the bytes are written by this module with the standard
library alone (the header is fixed text, the records are the arrays' little-endian
bytes), so they do not depend on whether or which version of pyarrow is installed; it is
compact (16 bytes a point, against about 25 for JSON) and encodes 10^6 points in a few
milliseconds; and anyone can read it (``numpy.load``, or :func:`decode_series` without
numpy). The artifacts are recorded with the ``npy`` serializer, so
:meth:`~pipetrail.execution.run.Run.load` returns numpy arrays when numpy is installed.
The series artifact's ``meta["summary"]`` holds ``count``, ``min``, ``max`` and ``last``
(the last point logged), which depend only on its content.

Thread-safety: a recorder serializes appends with a lock. The context variable is not
inherited by threads a step starts, unless they run in a copy of its context
(``contextvars.copy_context().run``); elsewhere the functions raise as outside a step.
"""

from __future__ import annotations

import json
import math
import numbers
import operator
import re
import threading
import time
from array import array
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.errors import DefinitionError
from pipetrail.execution.metric_format import (
    METRIC_OUTPUT_PREFIX,
    REPORT_OUTPUT_PREFIX,
    SERIES_DTYPE,
    decode_series,
    encode_series,
    encode_timestamps,
    series_timestamps,
)
from pipetrail.hashing.canonical import is_plain
from pipetrail.store import StoredArtifact

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from pipetrail.store import ContentStore, SerializerRegistry

__all__ = [
    "ACTIVE_RECORDER",
    "MAX_NAME_LENGTH",
    "METRIC_OUTPUT_PREFIX",
    "REPORT_OUTPUT_PREFIX",
    "SERIES_DTYPE",
    "StepRecorder",
    "StoredSeries",
    "active_recorder",
    "current_recorder",
    "decode_series",
    "encode_series",
    "encode_timestamps",
    "log_metric",
    "log_metrics",
    "output_metrics",
    "recording",
    "series_timestamps",
    "validate_name",
]

MAX_NAME_LENGTH = 150

_NAME = re.compile(r"[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)*")
_MAX_STEP = 2**63 - 1

_ACTIVE: ContextVar[StepRecorder | None] = ContextVar("pipetrail_step_recorder", default=None)
#: The context variable :class:`recording` sets: a step task sets and resets it itself,
#: which spares the calls of a context manager on every executed step.
ACTIVE_RECORDER = _ACTIVE


# Names found valid in this process (a metric is logged many times, run after run).
_VALID_NAMES: set[str] = set()
_VALID_LIMIT = 10_000


def validate_name(name: Any, what: str) -> str:
    """Return ``name`` if it is a valid metric or report name.

    Args:
        name: the name to check.
        what: ``"metric"`` or ``"report"``, for the error message.

    Raises:
        DefinitionError: the name is not a non-empty ``/``-separated path of segments made
            of letters, digits, ``_``, ``-`` and ``.``, or is too long.
    """
    if type(name) is str and name in _VALID_NAMES:
        return name
    if not isinstance(name, str):
        raise DefinitionError(
            f"{what} name {name!r} is a {type(name).__name__}; give a string such as 'train/loss'"
        )
    if (
        not _NAME.fullmatch(name)
        or len(name) > MAX_NAME_LENGTH
        or any(part in (".", "..") for part in name.split("/"))
    ):
        raise DefinitionError(
            f"{what} name {name!r} is not valid; use segments of letters, digits, '_', '-' "
            f"and '.' separated by '/' (e.g. 'train/loss'), no empty, '.' or '..' segment, "
            f"at most {MAX_NAME_LENGTH} characters"
        )
    if type(name) is str:
        if len(_VALID_NAMES) >= _VALID_LIMIT:
            _VALID_NAMES.clear()
        _VALID_NAMES.add(name)
    return name


def _is_numpy_bool(value: Any) -> bool:
    kind = type(value)
    return kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_")


def _coerce_value(name: str, value: Any) -> float:
    """Return ``value`` as a finite float, or raise saying why it is refused."""
    if isinstance(value, bool) or _is_numpy_bool(value):
        raise DefinitionError(
            f"metric {name!r}: {value!r} is a bool, not a number; log float(flag) if you mean 0/1"
        )
    if not isinstance(value, numbers.Real):
        hint = " (call .item() on a one-element array or tensor)" if hasattr(value, "item") else ""
        raise DefinitionError(
            f"metric {name!r}: value {value!r} of type {type(value).__qualname__} is not a "
            f"real number; log an int or a float{hint}"
        )
    try:
        number = float(value)
    except (OverflowError, ValueError, TypeError) as exc:
        raise DefinitionError(
            f"metric {name!r}: value {value!r} cannot be stored as a float64 ({exc})"
        ) from None
    if not math.isfinite(number):
        raise DefinitionError(
            f"metric {name!r}: value {number!r} is not finite; only finite numbers can be "
            "logged (check for a diverging loss, or skip the point)"
        )
    return number


def _coerce_step(subject: str, step: Any) -> int:
    """Return ``step`` as a non-negative int, or raise saying why it is refused."""
    if isinstance(step, bool) or _is_numpy_bool(step):
        raise DefinitionError(f"{subject}: step {step!r} is a bool; give an int index")
    try:
        index = operator.index(step)
    except TypeError:
        raise DefinitionError(
            f"{subject}: step {step!r} of type {type(step).__qualname__} is not an int; "
            "give a non-negative int index (or omit it to count points)"
        ) from None
    if not 0 <= index <= _MAX_STEP:
        raise DefinitionError(
            f"{subject}: step {index} is out of range; give an index from 0 to 2**63-1"
        )
    return index


class _Series:
    """The points of one metric, in logging order (three parallel arrays)."""

    __slots__ = ("next_step", "steps", "times", "values")

    def __init__(self) -> None:
        self.steps = array("q")
        self.values = array("d")
        self.times = array("q")
        self.next_step = 0


@dataclass(frozen=True)
class StoredSeries:
    """One metric's stored series, where its timestamps are, and the series' summary.

    Attributes:
        series: the series artifact (step indexes and values).
        timestamps: the timestamps artifact of the step run (every series it logged).
        summary: ``count``, ``min``, ``max`` and ``last`` of the values.
        timestamps_at: the index of this series' first timestamp in ``timestamps``.
        plain: the summary's numbers were shown plain
            (:func:`~pipetrail.hashing.canonical.is_plain`): the series' ``meta`` and its
            :meth:`reference`, made of them and of strings, ints and bools made here, are
            then plain too, and their encoding need not walk them again.
    """

    series: StoredArtifact
    timestamps: StoredArtifact
    summary: dict[str, Any]
    timestamps_at: int = 0
    plain: bool = False

    def reference(self, *, with_timestamps: bool = True) -> dict[str, Any]:
        """Return the reference a step event records for this metric."""
        ref: dict[str, Any] = {"digest": self.series.digest, **self.summary}
        if with_timestamps:
            ref["timestamps"] = self.timestamps.digest
            ref["timestamps_at"] = self.timestamps_at
        return ref


class StepRecorder:
    """Collects the metrics, reports and data operations of one step call.

    Args:
        step_name: the step's name, used in error messages.
        store: where reports (at once) and series (at the end) are written.
        registry: serializers (reports stored as JSON use the ``json`` one).
        seed: the step's derived seed (the default seed of data operations).
    """

    def __init__(
        self,
        step_name: str,
        store: ContentStore,
        registry: SerializerRegistry,
        *,
        seed: int | None = None,
    ) -> None:
        self.step_name = step_name
        self.store = store
        self.registry = registry
        self.seed = seed
        self.reports: dict[str, StoredArtifact] = {}
        self.data_ops: list[dict[str, Any]] = []
        self._series: dict[str, _Series] = {}
        self._lock = threading.Lock()
        self._origin = time.perf_counter_ns()

    def log(self, name: str, value: Any, step: Any = None) -> None:
        """Record one point (see :func:`log_metric`)."""
        if type(name) is not str:
            name = str(validate_name(name, "metric"))  # refuses non-strings, even unhashable
        series = self._series.get(name)
        # Fast paths: a finite float value and an in-range int step skip the generic checks.
        if type(value) is not float or not math.isfinite(value):
            value = _coerce_value(name, value)
        if step is not None and (type(step) is not int or not 0 <= step <= _MAX_STEP):
            step = _coerce_step(f"metric {name!r}", step)
        with self._lock:
            if series is None:
                series = self._series.get(name) or self._new_series(name)
            if step is None:
                step = series.next_step
            series.steps.append(step)
            series.values.append(value)
            series.times.append(time.perf_counter_ns() - self._origin)
            series.next_step = step + 1

    def log_many(self, values: Mapping[str, Any], step: Any = None) -> None:
        """Record one point per name, all validated before any is recorded."""
        if not hasattr(values, "items"):
            raise DefinitionError(
                f"log_metrics expects a dict of name -> value, not {type(values).__qualname__}"
            )
        checked = []
        for name, value in values.items():
            if name not in self._series:
                validate_name(name, "metric")
            number = value if type(value) is float and math.isfinite(value) else None
            if type(name) is not str:
                name = str(name)  # a str subclass: recorded under the plain str, as log() does
            checked.append((name, _coerce_value(name, value) if number is None else number))
        if step is not None:
            step = _coerce_step("log_metrics", step)
        # Every name and value is checked: the points are appended as log() appends them,
        # without checking each again, under one hold of the lock.
        with self._lock:
            known = self._series
            for name, number in checked:
                series = known.get(name)
                if series is None:
                    series = known[name] = _Series()
                index = series.next_step if step is None else step
                series.steps.append(index)
                series.values.append(number)
                series.times.append(time.perf_counter_ns() - self._origin)
                series.next_step = index + 1

    def _new_series(self, name: str) -> _Series:
        validate_name(name, "metric")
        series = self._series[name] = _Series()
        return series

    def add_report(self, name: str, record: StoredArtifact) -> None:
        """Attach a stored report under ``name`` (names are unique within a step).

        Raises:
            DefinitionError: a report with this name is already attached.
        """
        with self._lock:
            if name in self.reports:
                raise DefinitionError(
                    f"step {self.step_name!r} already attached a report named {name!r}; give "
                    f"each report its own name (e.g. '{name}/2')"
                )
            self.reports[name] = record

    def add_data_op(self, record: dict[str, Any]) -> None:
        """Append the record of a data operation (see :mod:`pipetrail.data`)."""
        with self._lock:
            self.data_ops.append(record)

    @property
    def names(self) -> list[str]:
        """The metric names logged so far, in first-logged order."""
        return list(self._series)

    def store_series(self) -> dict[str, StoredSeries]:
        """Write every metric's series, and one object of all their timestamps, to the store.

        Raises:
            StoreError: the store could not write them.
        """
        with self._lock:
            items = list(self._series.items())
        if not items:
            return {}
        times = encode_timestamps([series.times for _, series in items])
        times_digest = self.store.put_bytes(times)
        total = sum(len(series.times) for _, series in items)
        times_record = StoredArtifact(
            digest=times_digest,
            blob=times_digest,
            serializer="npy",
            type_name="numpy.ndarray",
            size=len(times),
            meta={
                "dtype": "int64",
                "shape": [total],
                "scalar": False,
                "unit": "ns since the step function was called",
            },
        )
        stored: dict[str, StoredSeries] = {}
        at = 0
        for name, series in items:
            count = len(series.values)
            data = encode_series(series.steps, series.values)
            digest = self.store.put_bytes(data)
            summary = {
                "count": count,
                "min": min(series.values),
                "max": max(series.values),
                "last": series.values[-1],
            }
            record = StoredArtifact(
                digest=digest,
                blob=digest,
                serializer="npy",
                type_name="numpy.ndarray",
                size=len(data),
                meta={
                    "dtype": SERIES_DTYPE,
                    "shape": [count],
                    "scalar": False,
                    "summary": summary,
                },
            )
            plain = is_plain(summary)
            stored[name] = StoredSeries(record, times_record, summary, at, plain)
            at += count
        return stored


class recording:
    """Make ``recorder`` the active one for the block (what ``execute_task`` does).

    A class rather than a generator: every executed step enters one.
    """

    __slots__ = ("_recorder", "_token")

    def __init__(self, recorder: StepRecorder) -> None:
        self._recorder = recorder
        self._token: Token[StepRecorder | None] | None = None

    def __enter__(self) -> StepRecorder:
        self._token = _ACTIVE.set(self._recorder)
        return self._recorder

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is not None:
            _ACTIVE.reset(token)


def current_recorder() -> StepRecorder | None:
    """Return the recorder of the running step, or None outside a step."""
    return _ACTIVE.get()


def active_recorder(caller: str) -> StepRecorder:
    """Return the recorder of the running step.

    Args:
        caller: the public function asking, named in the error.

    Raises:
        DefinitionError: no step is running in this context.
    """
    recorder = _ACTIVE.get()
    if recorder is None:
        raise DefinitionError(
            f"{caller}() was called outside a running step; it only works in the code of a "
            "@step while pipetrail runs it (Pipeline.run or `pipetrail run`), not when the "
            "function is called directly or from a thread that does not share the step's "
            "context"
        )
    return recorder


def log_metric(name: str, value: float, step: int | None = None) -> None:
    """Log one point of a metric from inside a running step.

    Args:
        name: the metric's name, namespaced with ``/`` (``train/loss``).
        value: a finite real number (int, float, numpy scalar; not bool).
        step: the point's index (a non-negative int); by default the previous point's
            index of the same name plus one, starting at 0.

    Raises:
        DefinitionError: called outside a running step, or an invalid name, value or step.

    Example:
        >>> @step
        ... def train(epochs: int) -> float:
        ...     for epoch in range(epochs):
        ...         log_metric("train/loss", 1.0 / (epoch + 1))
        ...     return 0.0
    """
    recorder = _ACTIVE.get()
    if recorder is None:
        recorder = active_recorder("log_metric")
    recorder.log(name, value, step)


def log_metrics(values: dict[str, float], step: int | None = None) -> None:
    """Log one point for each of several metrics from inside a running step.

    Every name and value is checked before any point is recorded, so an invalid entry
    records nothing.

    Args:
        values: metric name -> value (see :func:`log_metric`).
        step: the index given to every point; by default each name counts its own points.

    Raises:
        DefinitionError: called outside a running step, or an invalid name, value or step.
    """
    active_recorder("log_metrics").log_many(values, step)


# A returned dict stored as JSON is read back for its numbers when it is at most this big
# (the metrics dicts steps return are a few hundred bytes; a large dict is data, not a
# handful of metrics).
_OUTPUT_METRICS_BYTES = 64 * 1024


def output_metrics(store: ContentStore, outputs: Mapping[str, StoredArtifact]) -> dict[str, float]:
    """The numbers a step returned in dicts: what ``runs --where 'metrics.NAME ...'`` reads.

    Every top-level int or float (not bool) of an output stored as a JSON dict, named by
    its key, or ``OUTPUT.KEY`` when the step has several outputs (the names
    :mod:`pipetrail.lineage.run_facts` gives, without the node). Metric series and
    reports are not outputs here. The bytes are read through the store's verified path.
    """
    values = {
        name: record
        for name, record in outputs.items()
        if not name.startswith((METRIC_OUTPUT_PREFIX, REPORT_OUTPUT_PREFIX))
    }
    found: dict[str, float] = {}
    for name, record in values.items():
        if (record.serializer, record.type_name) != ("json", "builtins.dict"):
            continue
        if record.size > _OUTPUT_METRICS_BYTES:
            continue
        value = json.loads(store.get_bytes(record.blob))
        if not isinstance(value, dict):
            continue
        prefix = f"{name}." if len(values) > 1 else ""
        for key, item in value.items():
            number = isinstance(item, int | float) and not isinstance(item, bool)
            if number and math.isfinite(item):
                found[prefix + str(key)] = float(item)
    return found
