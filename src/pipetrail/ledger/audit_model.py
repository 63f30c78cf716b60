"""The largest derived tables, built in Python from the events and compared in place.

``audit verify`` replays the events into a private SQLite copy of the derived tables and
compares it with the stored tables (:mod:`pipetrail.ledger.audit_replica`). Writing that
copy is most of what the check costs, and most of it goes to five tables the projections
fill by simple rules: ``step_runs``, ``step_run_io``, ``run_metrics``, ``artifacts`` and
``sources``. :class:`TableModel` builds the rows those tables would hold, with the
projections' own row builders and their rules (docs/adr/0029-derived-tables-built-in-
python.md), and compares them with the stored rows, value by value and type by type. It
answers only "every row is the same" or "not": the caller then replays everything the old
way, which names the rows and gives the report it always gave. The model never decides
that a row differs, only that nothing does.

The model is built so that "the same" implies the replay would have found nothing:

* each value it keeps has exactly the Python type of its column (``str``, ``int`` within
  64 bits, finite ``float``), or is None where the column allows it, so SQLite's column
  typing leaves it unchanged; anything else (a number where text goes, a ``bool``, a
  nested value, a missing value in a ``NOT NULL`` column) makes it give up
  (:attr:`TableModel.broken`), as does any exception of the row builders: the replay
  then decides, and names the event it cannot project;
* a stored value equals a modelled one only with the same type (``5`` is not ``5.0``,
  ``''`` is not None), which is stricter than the replay's comparison;
* the row counts of each table must match, so a duplicated or extra row differs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import chain, islice
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from pipetrail.hashing.canonical import canonical_json
from pipetrail.ledger.audit_columns import TABLES
from pipetrail.ledger.events import EventKind
from pipetrail.ledger.projection_rows import (
    artifact_values,
    closed_step_rows,
    deletion_row,
    io_values,
    metric_values,
    note_row,
    rename_row,
    run_end_row,
    run_param_values,
    run_tag_rows,
    run_values,
    source_row,
    step_values_at,
    tagged_rows,
    untagged_keys,
)
from pipetrail.ledger.projections import reused_metrics

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pipetrail.ledger.events import Event

__all__ = [
    "MODEL_KINDS",
    "MODEL_TABLES",
    "RUN_ENDS",
    "ImpliedStart",
    "STREAMED",
    "TableModel",
    "Unmodelled",
    "Unstreamed",
]

MODEL_TABLES = (
    "runs", "step_runs", "artifacts", "step_run_io", "sources", "run_params", "run_tags",
    "run_notes", "run_metrics", "run_deletions",
)  # fmt: skip
_RUN_TABLES = ("runs", "run_params", "run_tags", "run_notes", "run_deletions")
_STEP_ENDS = {
    EventKind.STEP_COMPLETED: "completed",
    EventKind.STEP_CACHED: "cached",
    EventKind.STEP_FAILED: "failed",
}
_RUN_ENDS = {
    EventKind.RUN_COMPLETED: "completed",
    EventKind.RUN_FAILED: "failed",
    EventKind.RUN_CRASHED: "crashed",
    EventKind.RUN_INTERRUPTED: "interrupted",
}
RUN_ENDS = frozenset(_RUN_ENDS)
# A step event's kind -> the status its row takes.
_STEP_STATUS = {EventKind.STEP_STARTED.value: "running"} | {
    kind.value: status for kind, status in _STEP_ENDS.items()
}
# The kinds compared with event by event, as plain text (an enum's member is looked up
# on its class at each use).
_ARTIFACT = EventKind.ARTIFACT_RECORDED.value
_SOURCE = EventKind.SOURCE_OBSERVED.value
_RUN_STARTED = EventKind.RUN_STARTED.value
_RUN_TAGGED = EventKind.RUN_TAGGED.value
_RUN_UNTAGGED = EventKind.RUN_UNTAGGED.value
_RUN_NOTED = EventKind.RUN_NOTED.value
_RUN_DELETED = EventKind.RUN_DELETED.value
_RUN_NAMED = EventKind.RUN_NAMED.value
# Every kind with a projection (pipetrail.ledger.projections): the model follows them all.
MODEL_KINDS = frozenset(
    {
        EventKind.STEP_STARTED, *_STEP_ENDS, EventKind.ARTIFACT_RECORDED,
        EventKind.SOURCE_OBSERVED, EventKind.RUN_STARTED, *_RUN_ENDS, EventKind.RUN_NAMED,
        EventKind.RUN_TAGGED, EventKind.RUN_UNTAGGED, EventKind.RUN_NOTED, EventKind.RUN_DELETED,
    }
)  # fmt: skip
# The step_runs columns a start's row never holds NULL in when the payload lacks a key:
# read with ``p[...]`` (a payload lacking them raises), or not read from the payload.
_STARTED_VALUES = frozenset(
    {"step_run_id", "run_id", "node_id", "step", "pipeline", "status", "started_at",
     "first_seq", "last_seq"}
)  # fmt: skip
_INT64 = (-(2**63), 2**63 - 1)
# Tables whose rows :meth:`TableModel.add` checks a batch at a time.
_BATCHED = ("step_runs", "step_run_io", "run_metrics", "artifacts", *_RUN_TABLES)
# The tables a streaming model (TableModel's ``stored``) compares as the events go.
STREAMED = ("runs", "run_params", "step_runs", "step_run_io", "run_metrics")
_SQLITE_TYPE = {int: "integer", float: "real"}
_FIRST = itemgetter(0)  # a row's first value (a step_runs or runs row's key)
_IO_KEY = itemgetter(0, 1, 2)  # a step_run_io row's key
_METRIC_KEY = itemgetter(0, 1)  # a run_metrics row's key
_PARAM_KEY = itemgetter(0, 1)  # a run_params row's key
# The streamed tables whose rows a streaming model does not hold as the others do.
_WAITING = frozenset({"step_run_io", "run_metrics", "run_params"})
_Getter = Callable[[tuple[Any, ...]], tuple[Any, ...]]  # what SQLite's typeof() says of each


class _Fields(NamedTuple):
    """The fields of an event the projections read besides its payload, as :class:`Event`'s."""

    seq: Any
    ts: Any
    actor: Any
    kind: Any


# A row's first four fields as :class:`_Fields` (its ``__new__`` and ``_make`` are Python
# functions; this is a call of C code alone).
_fields = partial(tuple.__new__, _Fields)


class ImpliedStart(dict[str, Any]):
    """A ``step.started`` payload that is the same-named members of the next event's.

    Given to :meth:`TableModel.add` in place of a parsed payload, directly followed by
    the step's closing event, when the started event's stored text was found to be byte
    for byte the canonical text of those members of the closing event's payload (itself
    written by orjson, see :func:`~pipetrail.ledger.chain_check.parse_plain_payload`):
    parsing the text would give this very dictionary. Its row is then the closing row's
    values in the same columns (each checked with that row), the status ``running`` and
    NULL elsewhere (columns that allow it: every started row holds it there), so the
    model need not build it when the closing event replaces it at once.
    """


class Unmodelled(Exception):
    """The model cannot stand for the replay: replay everything and compare the old way."""


class Unstreamed(Unmodelled):
    """An event changes a row a streaming model compared and dropped: model holding them all.

    Only events pipetrail never writes do that (a step's event after the step ended, a
    run started twice): the model then starts again without streaming.
    """


class _Stored:
    """A stored table read in its own order, its rows taken by key as the model's are done.

    The stored rows come in the order they were written, which is the order the model
    is done with its rows in, near enough: the row wanted is nearly always the next one.
    Rows read past are kept by key until wanted (or until :meth:`rest`).
    """

    def __init__(
        self, chunks: Iterator[list[tuple[Any, ...]]], key: Callable[[tuple[Any, ...]], Any]
    ) -> None:
        self._chunks = chunks  # the stored rows in order, a list at a time
        self._key = key
        self._rows: list[tuple[Any, ...]] = []
        self._at = 0
        self.ahead: dict[Any, tuple[Any, ...]] = {}

    def take(self, key: Any) -> tuple[Any, ...] | None:
        """The stored row under ``key``, no longer kept; None when the table has none."""
        if self.ahead:
            found = self.ahead.pop(key, None)
            if found is not None:
                return found
        rows, at, read, ahead = self._rows, self._at, self._key, self.ahead
        while True:
            if at == len(rows):
                rows, at = next(self._chunks, []), 0
                self._rows = rows
                if not rows:
                    self._at = 0
                    return None
            row = rows[at]
            at += 1
            under = read(row)
            if under == key:
                self._at = at
                return row
            if under in ahead:
                raise Unmodelled("a stored table holds two rows under one key")
            ahead[under] = row

    def next_are(self, rows: list[tuple[Any, ...]]) -> bool:
        """Whether the next stored rows are ``rows``, in order (then taken), none read past."""
        if self.ahead:
            return False
        count, at = len(rows), self._at
        if len(self._rows) - at < count:
            stored = self._rows[at:]
            while len(stored) < count and (more := next(self._chunks, None)):
                stored += more
            self._rows, self._at, at = stored, 0, 0
        if self._rows[at : at + count] == rows:
            self._at = at + count
            return True
        return False

    def rest(self) -> dict[Any, tuple[Any, ...]]:
        """Every stored row not taken, by key."""
        while self.take(_NO_KEY) is not None:
            pass  # take() keeps every row it reads past; none is under _NO_KEY
        return self.ahead


_NO_KEY = object()  # a key no stored row is under


class _Table:
    """One modelled table's layout: column order, types, nullability and key."""

    def __init__(self, name: str) -> None:
        table = TABLES[name]  # the schema's columns, read without SQLAlchemy
        self.name = name
        self.columns = list(table.names)
        self.keys = list(table.keys)
        self.types = table.types
        self.nullable = table.nullable
        self.ints = [at for at, t in enumerate(self.types) if t is int]
        self.floats = [at for at, t in enumerate(self.types) if t is float]
        # Type signatures (one type per value) already found acceptable, and how to read
        # the integers and the floats of a row with it.
        self.valid: dict[tuple[type, ...], tuple[_Getter | None, _Getter | None]] = {}
        self.get = itemgetter(*self.columns)  # a row dict -> the tuple in column order
        self.key = itemgetter(*(self.columns.index(k) for k in self.keys))
        self.select = f"SELECT {', '.join(self.columns)} FROM "  # noqa: S608 - schema names

    def check(self, row: tuple[Any, ...], plain: bool) -> tuple[Any, ...]:
        """``row`` when every value has its column's type; raises :class:`Unmodelled`."""
        signature = tuple(map(type, row))
        numbers = self.valid.get(signature)
        if numbers is None:
            numbers = self._learn(signature)
        ints, floats = numbers
        if ints is not None:
            found = ints(row)
            if max(found) > _INT64[1] or min(found) < _INT64[0]:
                raise Unmodelled(f"{self.name}: an integer beyond 64 bits")
        if floats is not None and not all(map(math.isfinite, floats(row))):
            raise Unmodelled(f"{self.name}: a number that is not finite")
        if not plain:
            for value in row:
                if type(value) is str and not value.isascii():
                    try:
                        value.encode("utf-8")
                    except UnicodeEncodeError as exc:
                        raise Unmodelled(f"{self.name}: text with no UTF-8 encoding") from exc
        return row

    def check_many(self, rows: list[tuple[Any, ...]], plain: bool) -> list[tuple[Any, ...]]:
        """``rows`` when each passes :meth:`check`; raises :class:`Unmodelled`.

        The same rules as :meth:`check`, read column by column: a column's values all of
        its type (or None where it allows one), its integers within 64 bits, its floats
        finite and, unless ``plain``, its text encodable as UTF-8.
        """
        for at, column in enumerate(zip(*rows, strict=True)):
            kind = self.types[at]
            found = set(map(type, column))
            if len(found) != 1 or kind not in found:
                found.discard(kind)
                if found != {type(None)}:
                    raise Unmodelled(f"{self.name}: a value of another type than its column's")
                if not self.nullable[at]:
                    raise Unmodelled(f"{self.name}: a NULL where the column forbids one")
                if kind is str and plain:
                    continue  # nothing more to check of text orjson parsed
                column = [value for value in column if value is not None]  # type: ignore[assignment]
                if not column:
                    continue
            if kind is int:
                if max(column) > _INT64[1] or min(column) < _INT64[0]:
                    raise Unmodelled(f"{self.name}: an integer beyond 64 bits")
            elif kind is float:
                if not all(map(math.isfinite, column)):
                    raise Unmodelled(f"{self.name}: a number that is not finite")
            elif not plain and not all(map(str.isascii, column)):
                try:
                    for value in column:
                        value.encode("utf-8")
                except UnicodeEncodeError as exc:
                    raise Unmodelled(f"{self.name}: text with no UTF-8 encoding") from exc
        return rows

    def _learn(self, signature: tuple[type, ...]) -> tuple[_Getter | None, _Getter | None]:
        """Check a signature not met yet; what to read of rows with it: (ints, floats)."""
        for value, kind, nullable in zip(signature, self.types, self.nullable, strict=True):
            if value is type(None):
                if not nullable:
                    raise Unmodelled(f"{self.name}: a NULL where the column forbids one")
            elif value is not kind:
                raise Unmodelled(f"{self.name}: a value of another type than its column's")
        numbers = (
            _getter([at for at in self.ints if signature[at] is int]),
            _getter([at for at in self.floats if signature[at] is float]),
        )
        self.valid[signature] = numbers
        return numbers


def _getter(positions: list[int]) -> _Getter | None:
    """A function giving a row's values at ``positions`` as a tuple; None for none."""
    if not positions:
        return None
    return itemgetter(*positions, positions[0])  # two or more positions: always a tuple


class TableModel:
    """The rows the projections would write into :data:`MODEL_TABLES`, built in Python.

    Feed it every event of :data:`MODEL_KINDS` and :data:`RUN_ENDS` in sequence order
    (:meth:`add`), then :meth:`compare` each table with the stored rows. Once
    :attr:`broken` is set (a payload or a sequence of events it does not model), it
    ignores further events and every comparison fails.

    Args:
        stored: streaming: reads a stored table, in its own order (``key`` None), or its
            row under ``key``, as lists of rows (a few thousand at a time). The rows of
            :data:`STREAMED` are then compared as the events go and dropped (see
            :meth:`_settle`), the rest at the end (:meth:`finish`), so that a large
            ledger's rows are not all held at once.
    """

    def __init__(
        self, stored: Callable[[str, Any], Iterator[list[tuple[Any, ...]]]] | None = None
    ) -> None:
        self.layout = {name: _Table(name) for name in MODEL_TABLES}
        self._read = stored
        self._stored: dict[str, _Stored] = {}
        self.done = dict.fromkeys(STREAMED, 0)  # rows compared and dropped, per table
        # The step runs and runs whose rows were compared and dropped: no later event
        # changes a step run's row; a run's, only a rename or another end (see _revive).
        self.steps_done: set[Any] = set()
        self.runs_done: set[Any] = set()
        # Streaming, a step run's inputs and outputs and a run's parameters wait here for
        # their step run's (run's) row to be dropped, and go with it; ``io`` and the
        # ``run_params`` of ``simple`` then hold only those that differed from the stored.
        self._io_waiting: dict[Any, list[tuple[Any, ...]]] = {}
        self._params_waiting: dict[Any, list[tuple[Any, ...]]] = {}
        # Metrics stay in ``metrics`` (a later hit may copy them): those of a dropped step
        # run were compared, but the ones that differed, kept here.
        self._metrics_left: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self.steps: dict[str, tuple[Any, ...]] = {}
        self.io: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self.metrics: dict[str, dict[str, tuple[Any, ...]]] = {}
        self.artifacts: dict[str, tuple[Any, ...]] = {}
        self.sources: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self.copied: set[str] = set()  # step runs holding metrics copied from another
        self.simple: dict[str, dict[Any, tuple[Any, ...]]] = {t: {} for t in _RUN_TABLES}
        self.broken: str | None = None
        self.unstreamed = False  # broken by Unstreamed: modelling without streaming may do
        self.released = False  # see release()
        self._unchecked: dict[str, list[tuple[Any, ...]]] = {t: [] for t in _BATCHED}
        steps = self.layout["step_runs"]
        self._first_seq = steps.columns.index("first_seq")
        # Whether a start's row may be left to its closing row's check (ImpliedStart):
        # every column a start's payload may leave out must allow NULL.
        self._implied = all(
            nullable
            for name, nullable in zip(steps.columns, steps.nullable, strict=True)
            if name not in _STARTED_VALUES
        )
        self._status = steps.columns.index("status")
        self._run = steps.columns.index("run_id")
        self._closing = [steps.columns.index(c) for c in ("ended_at", "error", "last_seq")]
        runs = self.layout["runs"].columns
        self._ending = [runs.index(c) for c in ("status", "ended_at", "error", "last_seq")]
        # Where a run's end puts each value run_end_row gives, by name.
        self._ended = [(runs.index(c), c) for c in ("status", "ended_at", "error", "last_seq")]
        self._name = runs.index("name")

    def add(
        self,
        events: Sequence[tuple[Sequence[Any], dict[str, Any]]],
        encode: Callable[[Any], Any] | None,
        *,
        plain: bool,
    ) -> None:
        """Model events in sequence order (other kinds are ignored).

        Args:
            events: events as stored rows, with their parsed payloads. A row begins with
                the event's ``seq``, ``ts``, ``actor`` and ``kind``, in this order (what
                follows is not read).
            encode: the JSON columns' encoder the replay would use (None: canonical JSON).
            plain: orjson parsed every payload (its strings are valid Unicode).
        """
        if self.broken is not None:
            return
        sources: list[dict[str, Any]] = []  # no other kind touches them: checked together
        # The step tables' rows, checked together after the batch (the rows are kept or
        # bound as they come; any that fails the check marks the whole model broken).
        self._unchecked = {table: [] for table in _BATCHED}
        started = self._unchecked["step_runs"]
        steps = self.steps
        held: tuple[int, dict[str, Any]] | None = None  # an implied start (ImpliedStart)
        try:
            for row, p in events:
                kind = row[3]
                status = _STEP_STATUS.get(kind)
                if held is not None and (status is None or status == "running"):
                    self._started(*held, encode)  # not followed by its closing event
                    held = None
                if status is not None:
                    if status != "running":
                        self._step_end(status, row[0], p, encode, plain, held)
                        held = None
                    elif type(p) is ImpliedStart:
                        held = (row[0], p)
                    else:  # a step.started row: kept unless one is there
                        built = step_values_at("running", row[0], p, encode)
                        started.append(built)
                        if built[0] in self.steps_done:
                            raise Unstreamed("step_runs: a start of a step run that ended")
                        steps.setdefault(built[0], built)
                    continue
                # The projections' row builders read these fields of an Event alone.
                event = cast("Event", _fields(row[:4]))
                if kind == _ARTIFACT:
                    self._artifact(event, p, encode)
                elif kind == _SOURCE:
                    sources.append(source_row(event, p))
                elif kind in _RUN_ENDS:
                    self._run_ended(_RUN_ENDS[kind], event, p)
                    self._run_end(event, p, plain)
                else:
                    self._run_event(kind, event, p, encode)
            if held is not None:
                self._started(*held, encode)
            if sources:
                self._sources(sources, plain)
            for table, rows in self._unchecked.items():
                if rows:
                    self.layout[table].check_many(rows, plain)
            if self._read is not None:
                self._settle()
        except Unmodelled as exc:
            self.broken = str(exc)
            self.unstreamed = isinstance(exc, Unstreamed)
        except Exception as exc:  # noqa: BLE001 - the replay names what its projection rejects
            self.broken = f"a payload the projections reject ({type(exc).__name__})"

    def _sources(self, built: list[dict[str, Any]], plain: bool) -> None:
        """``sources`` inserts, in order: the first row under a key stays."""
        layout = self.layout["sources"]
        rows = layout.check_many(list(map(layout.get, built)), plain)
        keep = self.sources.setdefault
        for key, row in zip(map(layout.key, rows), rows, strict=True):
            keep(key, row)

    def _started(self, seq: int, p: dict[str, Any], encode: Callable[[Any], Any] | None) -> None:
        """A ``step.started`` event's row: inserted unless one is there, checked either way."""
        built = step_values_at("running", seq, p, encode)
        self._unchecked["step_runs"].append(built)
        if built[0] in self.steps_done:
            raise Unstreamed("step_runs: a start of a step run that ended")
        self.steps.setdefault(built[0], built)

    def _step_end(
        self,
        status: str,
        seq: int,
        p: dict[str, Any],
        encode: Callable[[Any], Any] | None,
        plain: bool,
        held: tuple[int, dict[str, Any]] | None = None,
    ) -> None:
        """A step's closing event: its row, its inputs and outputs, its metrics.

        ``held``: the step's start, an :class:`ImpliedStart` directly before this event,
        not modelled yet.
        """
        unchecked = self._unchecked
        step = p["step_run_id"]
        if step in self.steps_done:
            raise Unstreamed("step_runs: an event of a step run that ended")
        old = self.steps.get(step)
        if held is not None and (
            old is not None
            or held[1]["step_run_id"] is not step
            or p.get("decision") == "hit"
            or not self._implied
        ):
            self._started(*held, encode)  # it leaves a row there as it is; so does a hit
            old, held = self.steps.get(step), None
        if held is not None:
            # The start would insert its row and this event replace it at once, keeping
            # the start's sequence number: one row is built. The start's own row needs no
            # check of its own: its values are this row's in the same columns, constants,
            # and NULL where every start's row holds NULL.
            row = step_values_at(status, seq, p, encode, held[0])
            self.steps[step] = row
        elif old is None:
            row = step_values_at(status, seq, p, encode)
            self.steps[step] = row
        elif p.get("decision") != "hit":  # a hit inserts or leaves the row as it is
            # An update keeps the row's first event: the row is built with it.
            row = step_values_at(status, seq, p, encode, old[self._first_seq])
            self.steps[step] = row
        else:
            row = step_values_at(status, seq, p, encode)  # bound all the same: checked
        unchecked["step_runs"].append(row)
        edges = io_values(p, outputs=status != "failed")
        if edges and self._read is not None:
            unchecked["step_run_io"] += edges
            had = self._io_waiting.get(step)
            if had is None:
                self._io_waiting[step] = edges
            else:  # a step run's second event with edges: the first row under a key stays
                seen = {edge[:3] for edge in had}
                had += [edge for edge in edges if edge[:3] not in seen]
        elif edges:
            unchecked["step_run_io"] += edges
            keep = self.io.setdefault
            for edge in edges:
                keep(edge[:3], edge)  # the key: step run, direction, name
        if status == "failed":
            return
        own = metric_values(p)
        if own:
            unchecked["run_metrics"] += own
            mine = self.metrics.setdefault(step, {})
            for metric in own:
                mine.setdefault(metric[1], metric)
        if status != "cached":
            return  # only a hit copies metrics (reused_metrics says None otherwise)
        copy = reused_metrics(p, status, [{"key": metric[1]} for metric in own])
        if copy is None:
            return
        layout = self.layout["run_metrics"]
        params = copy[1]
        reused = params["reused"]
        if type(reused) is not str or reused in self.copied or reused == step:
            # A hit of a hit: copies in one batch may run in another order than one by
            # one; a step reusing itself conflicts with its own rows. The replay decides.
            raise Unmodelled("run_metrics: a hit reusing what is not an executed step run")
        logged = {m[1] for m in own}
        prefix = params["name_prefix"]
        copied = [
            layout.check(
                (step, key, params["run_id"], params["node_id"], prefix + key, found[5], found[6]),
                plain,
            )
            for key, found in self.metrics.get(reused, {}).items()
            if found[6] == "output" and key not in logged
        ]
        if not copied:
            return
        mine = self.metrics.setdefault(step, {})
        for found in copied:
            if found[1] in mine:  # the copy is a plain INSERT: the replay would fail
                raise Unmodelled("run_metrics: a copied metric that exists already")
            mine[found[1]] = found
        self.copied.add(step)

    def _run_end(self, event: Event, p: dict[str, Any], plain: bool) -> None:
        for close in closed_step_rows(event, p):
            status, ended, error, last, step, run = (
                close["status"], close["ended_at"], close["error"], close["last_seq"],
                close["step_run_id"], close["run_id"],
            )  # fmt: skip
            if type(run) is not str or type(step) is not str:
                raise Unmodelled("step_runs: a run end naming its steps by other than text")
            row = self.steps.get(step)
            if row is None or row[self._run] != run or row[self._status] != "running":
                continue
            changed = list(row)
            changed[self._status] = status
            for at, value in zip(self._closing, (ended, error, last), strict=True):
                changed[at] = value
            self.steps[step] = changed_row = tuple(changed)
            self._unchecked["step_runs"].append(changed_row)

    def _insert(self, table: str, row: dict[str, Any]) -> tuple[Any, ...]:
        """``INSERT ... ON CONFLICT DO NOTHING`` of ``row``; the row now under its key."""
        return self._insert_values(table, self.layout[table].get(row))

    def _insert_values(self, table: str, found: tuple[Any, ...]) -> tuple[Any, ...]:
        """:meth:`_insert` of a row given as values, in the table's column order."""
        self._unchecked[table].append(found)  # checked with the batch's others
        key = self.layout[table].key(found)
        if table == "runs" and key in self.runs_done:
            raise Unstreamed("runs: a start of a run that ended")
        return self.simple[table].setdefault(key, found)

    def _run_event(
        self,
        kind: str,
        event: Event,
        p: dict[str, Any],
        encode: Callable[[Any], Any] | None,
    ) -> None:
        tags = self.simple["run_tags"]
        if kind == _RUN_STARTED:
            # The rows as values, in the tables' column order (RUN_ROW_COLUMNS,
            # PARAM_ROW_COLUMNS: a unit test holds them equal to the layouts').
            self._insert_values("runs", run_values(event.seq, p, encode))
            if self._read is None:
                for found in run_param_values(p, encode):
                    self._insert_values("run_params", found)
            else:
                self._params(run_param_values(p, encode))
            if p.get("tags"):  # run_tag_rows gives no row otherwise
                self._tag(run_tag_rows(event, p))
        elif kind == _RUN_TAGGED:
            self._tag(tagged_rows(event, p))
        elif kind == _RUN_UNTAGGED:
            for gone in untagged_keys(p):
                run, key = gone["run_id"], gone["key"]
                if type(run) is not str or type(key) is not str:
                    raise Unmodelled("run_tags: a key or run that is not text")
                tags.pop((run, key), None)
        elif kind == _RUN_NOTED:
            self._insert("run_notes", note_row(event, p))
        elif kind == _RUN_DELETED:
            self._insert("run_deletions", deletion_row(event, p))
        elif kind == _RUN_NAMED:
            change = rename_row(p)
            self._update_run(change["run_id"], [(self._name, change["name"])])

    def _tag(self, rows: list[dict[str, Any]]) -> None:
        """``run_tags`` upserts: the newest value and event per key."""
        layout = self.layout["run_tags"]
        tags = self.simple["run_tags"]
        unchecked = self._unchecked["run_tags"]
        for row in rows:
            found = layout.get(row)
            unchecked.append(found)  # checked with the batch's others
            tags[layout.key(found)] = found

    def _run_ended(self, status: str, event: Event, p: dict[str, Any]) -> None:
        change = run_end_row(status, event, p)
        self._update_run(change["run_id"], [(at, change[c]) for at, c in self._ended])

    def _update_run(self, run: Any, values: list[tuple[int, Any]]) -> None:
        """``UPDATE runs SET ... WHERE run_id = :run``; the values are checked either way."""
        layout = self.layout["runs"]
        if type(run) is not str:
            raise Unmodelled("runs: an update naming its run by other than text")
        for at, value in values:  # the replay binds them even when no row matches
            if not (value is None or type(value) is layout.types[at]):
                raise Unmodelled("runs: a value of another type than its column's")
        runs = self.simple["runs"]
        row = runs.get(run)
        if row is None and run in self.runs_done:
            row = runs[run] = self._revive(run)
        if row is not None:
            changed = list(row)
            for at, value in values:
                changed[at] = value
            runs[run] = found = tuple(changed)
            self._unchecked["runs"].append(found)  # checked with the batch's others

    def _artifact(
        self,
        event: Event,
        p: dict[str, Any],
        encode: Callable[[Any], Any] | None,
    ) -> None:
        row = artifact_values(event, p, encode or canonical_json)
        self._unchecked["artifacts"].append(row)  # checked with the batch's others
        if p.get("resealed_from"):  # a reseal replaces the row; otherwise the first wins
            self.artifacts[row[0]] = row
        else:
            self.artifacts.setdefault(row[0], row)

    def _params(self, found: list[tuple[Any, ...]]) -> None:
        """Streaming, a run's ``run_params`` inserts (as values): they wait for the run's row."""
        if not found:
            return
        self._unchecked["run_params"] += found
        run = found[0][0]
        had = self._params_waiting.get(run)
        if had is None:
            # One run's parameters (run_param_values gives them all under the payload's
            # run, by distinct names): no two under one key.
            self._params_waiting[run] = found
        else:  # the run started twice: the first row under a key stays
            seen = {param[:2] for param in had}
            had += [param for param in found if param[:2] not in seen]

    def _settle(self) -> None:
        """Compare and drop the rows of :data:`STREAMED` no later event changes.

        After each batch: a step run's row once it no longer runs, with its inputs and
        outputs and its metrics; a run's row once it ended, with its parameters. A row
        equal to its stored row is dropped (only its step run's or run's id is kept; a
        step run's metrics, which a later hit may copy, stay); one that differs is kept,
        and compared again when an event changes it, or at the end (:meth:`finish`): a
        later event may yet make it the stored row (a rename). A row the stored table
        lacks is one it lacks at the end too: no event deletes these tables' rows.
        """
        unchecked = self._unchecked
        steps, status = self.steps, self._status
        ended = [
            step
            for step in dict.fromkeys(map(_FIRST, unchecked["step_runs"]))
            if (row := steps.get(step)) is not None and row[status] != "running"
        ]
        if ended:
            matched = self._compare_rows("step_runs", ended, [steps[step] for step in ended])
            for step in matched:
                del steps[step]
            self.steps_done.update(matched)
            waiting = self._io_waiting
            edges = [edge for step in matched for edge in waiting.pop(step, ())]
            for key, row in self._left("step_run_io", edges, _IO_KEY):
                self.io[key] = row
            metrics = self.metrics
            found = [row for step in matched if step in metrics for row in metrics[step].values()]
            for key, row in self._left("run_metrics", found, _METRIC_KEY):
                self._metrics_left[key] = row
        runs, ended_at = self.simple["runs"], self._ending[0]
        ended = [
            run
            for run in dict.fromkeys(map(_FIRST, unchecked["runs"]))
            if (row := runs.get(run)) is not None and row[ended_at] != "running"
        ]
        if ended:
            matched = self._compare_rows("runs", ended, [runs[run] for run in ended])
            for run in matched:
                del runs[run]
            self.runs_done.update(matched)
            waiting = self._params_waiting
            params = [param for run in matched for param in waiting.pop(run, ())]
            left = self.simple["run_params"]
            for key, row in self._left("run_params", params, _PARAM_KEY):
                left[key] = row

    def _compare_rows(self, table: str, keys: list[Any], rows: list[tuple[Any, ...]]) -> list[Any]:
        """The keys of ``rows`` equal to their stored rows (the others are kept)."""
        if self._table(table).next_are(rows):
            self.done[table] += len(rows)
            return keys
        return [key for key, row in zip(keys, rows, strict=True) if self._drop(table, key, row)]

    def _left(
        self, table: str, rows: list[tuple[Any, ...]], key: Callable[[tuple[Any, ...]], Any]
    ) -> list[tuple[Any, tuple[Any, ...]]]:
        """``rows`` compared with the stored rows: those that differ, by key."""
        if not rows or self._table(table).next_are(rows):
            self.done[table] += len(rows)
            return []
        return [(key(row), row) for row in rows if not self._drop(table, key(row), row)]

    def _drop(self, table: str, key: Any, row: tuple[Any, ...]) -> bool:
        """Whether ``row`` is the stored row under ``key`` (then counted as compared).

        Raises:
            Unmodelled: the stored table has no row under ``key``.
        """
        found = self._table(table).take(key)
        if found is None:
            raise Unmodelled(f"{table}: a row the events give is not stored")
        if found == row:
            self.done[table] += 1
            return True
        self._stored[table].ahead[key] = found  # compared again later
        return False

    def _table(self, table: str) -> _Stored:
        """The stored rows of ``table``, as read so far."""
        found = self._stored.get(table)
        if found is None:
            assert self._read is not None  # noqa: S101 - only when streaming
            found = self._stored[table] = _Stored(self._read(table, None), self.layout[table].key)
        return found

    def _revive(self, run: Any) -> tuple[Any, ...]:
        """A dropped run's row again, for an event that changes it (a rename, another end).

        It was found equal to its stored row, which is read back in its place (and kept
        as the stored row to compare with again).
        """
        assert self._read is not None  # noqa: S101 - only when streaming
        found = [row for chunk in self._read("runs", run) for row in chunk]
        if len(found) != 1:
            raise Unmodelled("runs: a stored row changed while read")
        row = tuple(found[0])
        self.runs_done.discard(run)
        self.done["runs"] -= 1
        self._table("runs").ahead[run] = row
        return row

    def streams(self, table: str) -> bool:
        """Whether ``table``'s rows are compared as the events go (see :meth:`finish`)."""
        return self._read is not None and table in self.done

    def finish(self, table: str) -> bool:
        """Whether the rows of a streamed ``table`` not yet dropped are the stored rest."""
        if self.broken is not None:
            return False
        if self.released:
            raise RuntimeError("the model's rows were released: it compares nothing any more")
        return self._table(table).rest() == self.rows(table)

    def release(self) -> None:
        """Drop every modelled row, once compared (:attr:`broken` stays as it is).

        Freeing a million rows takes a few tenths of a second: ``audit verify``'s first
        process does it while the second one still works rather than after its answer.
        The model compares nothing any more (:meth:`compare` raises ``RuntimeError``).
        """
        self.released = True
        self.steps, self.io, self.metrics, self.artifacts, self.sources = {}, {}, {}, {}, {}
        self.copied = set()
        self.simple = {t: {} for t in _RUN_TABLES}

    def rows(self, table: str) -> dict[Any, tuple[Any, ...]]:
        """The modelled rows of ``table`` by key (one value, or a tuple of several).

        Streaming, only those not dropped yet (see :meth:`_settle`).
        """
        if self._read is not None and table in _WAITING:
            return self._live(table)
        if table == "step_runs":
            return self.steps
        if table == "step_run_io":
            return self.io
        if table == "artifacts":
            return self.artifacts
        if table == "sources":
            return self.sources
        if table in self.simple:
            return self.simple[table]
        return {(s, key): row for s, rows in self.metrics.items() for key, row in rows.items()}

    def _live(self, table: str) -> dict[Any, tuple[Any, ...]]:
        """Streaming, the rows of ``table`` not dropped, by key (see :data:`_WAITING`)."""
        if table == "run_metrics":
            done = self.steps_done
            found = {
                (step, key): row
                for step, rows in self.metrics.items()
                if step not in done
                for key, row in rows.items()
            }
            return found | self._metrics_left
        if table == "step_run_io":
            waiting, left, width = self._io_waiting, self.io, 3
        else:
            waiting, left, width = self._params_waiting, self.simple["run_params"], 2
        found = {row[:width]: row for rows in waiting.values() for row in rows}
        return found | left

    def _in_order(self, table: str) -> Iterator[tuple[Any, ...]]:
        """The modelled rows of ``table`` in the model's order, as :meth:`rows` holds them.

        ``run_metrics`` is held by step run: its rows are read in place rather than
        gathered into one dictionary first.
        """
        if table == "run_metrics":
            return chain.from_iterable(map(dict.values, self.metrics.values()))
        return iter(self.rows(table).values())

    def count(self, table: str) -> int:
        """How many rows the events give ``table``."""
        done = self.done.get(table, 0)
        if self._read is not None and table in _WAITING:
            # The rows of _live, counted where they are (no key is in two places).
            if table == "run_metrics":
                ended = self.steps_done
                held = sum(len(rows) for step, rows in self.metrics.items() if step not in ended)
                return done + held + len(self._metrics_left)
            if table == "step_run_io":
                waiting, left = self._io_waiting, self.io
            else:
                waiting, left = self._params_waiting, self.simple["run_params"]
            return done + sum(map(len, waiting.values())) + len(left)
        if table == "run_metrics":
            return done + sum(len(rows) for rows in self.metrics.values())
        return done + len(self.rows(table))

    def compare(self, table: str, stored: list[tuple[Any, ...]]) -> bool:
        """Whether the stored rows of ``table`` are exactly the modelled ones.

        Equal means: as many rows, each under a key the model has, with values equal to
        the modelled row's (Python's ``==``: ``5 == 5.0``), and in every column holding
        numbers, values of the column's own type (:meth:`typed`); text equals only text,
        and None only None. False when :attr:`broken`.
        """
        if self.broken is not None:
            return False
        if self.released:
            raise RuntimeError("the model's rows were released: it compares nothing any more")
        layout = self.layout[table]
        model = self.rows(table)
        if len(stored) != len(model):
            return False
        # Read in the order they were inserted, the stored rows are usually the modelled
        # rows in the model's order: row by row equal, each is under the key its model
        # row is under (the key is part of the row), so the dictionaries are equal too.
        if stored == list(model.values()):
            return True
        return dict(zip(map(layout.key, stored), stored, strict=True)) == model

    def same_in_order(self, table: str, chunks: Iterable[list[tuple[Any, ...]]]) -> bool | None:
        """Whether the stored rows of ``table``, a chunk at a time, are the modelled rows.

        The first test of :meth:`compare` (the stored rows, in the order they were
        written, equal the modelled rows in the model's order), made without holding
        every stored row at once. True: equal, so :meth:`compare` would say so too (the
        number types aside, see :meth:`typed`). None: not in that order, or not as many;
        read them all and :meth:`compare` them. False when :attr:`broken`.
        """
        if self.broken is not None:
            return False
        if self.released:
            raise RuntimeError("the model's rows were released: it compares nothing any more")
        model = self._in_order(table)
        for chunk in chunks:
            if chunk != list(islice(model, len(chunk))):
                return None
        return True if next(model, None) is None else None

    def typed(self, table: str, stored: list[tuple[Any, ...]]) -> bool:
        """Whether each number column of the stored rows holds only its type, or None."""
        layout = self.layout[table]
        for at in (*layout.ints, *layout.floats):
            kind = layout.types[at]
            if not all(type(value) is kind for value in map(itemgetter(at), stored)
                       if value is not None):  # fmt: skip
                return False
        return True

    def typed_sql(self, table: str) -> str:
        """A SQLite query counting the rows :meth:`typed` would refuse (from ``FROM``)."""
        layout = self.layout[table]
        wrong = [
            f"typeof({layout.columns[at]}) NOT IN ('{_SQLITE_TYPE[layout.types[at]]}', 'null')"
            for at in (*layout.ints, *layout.floats)
        ]
        return "SELECT COUNT(*) FROM {table} WHERE " + (" OR ".join(wrong) or "0")  # noqa: S608
