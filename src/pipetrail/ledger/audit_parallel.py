"""Part of the derived tables of ``audit verify``, replayed in a second process meanwhile.

Replaying the derived tables is most of what :func:`pipetrail.ledger.audit.verify` costs,
and it splits cleanly in two. The step tables (``step_runs``, ``step_run_io``,
``run_metrics``) are written by the step events alone, and by the run-ending events that
close a run's steps; ``sources`` by the ``source.observed`` events alone; the run tables
(``runs``, ``run_params``, ``run_tags``, ``run_notes``, ``run_deletions``) by the run
events alone. No other table is read or written by those projections. So a second
process replays those events into a replica of its own and compares those tables
(:data:`BESIDE_TABLES`), while the first walks the chain (every event re-hashed, the
Merkle tree recomputed), replays every other event (``artifact.recorded`` above all)
and compares every other table, then checks the signatures
(:class:`~pipetrail.ledger.audit.Meanwhile`) while this one still works.

The second process reads the ledger's SQLite file itself, read-only, in a snapshot of
its own: it goes on only when that snapshot's head is the one the first process read,
so both read the same events. It parses the payloads of the events it replays (the
first process skips them) and reports the first that is not a JSON object; the first
process merges that with its own findings by sequence number, so the report is the
one a single walk gives. When the second process cannot run, fails or sees another
head, the whole check runs in one process.

Once its replay is done, the second process may take on work of the caller's check
(:class:`~pipetrail.ledger.audit.Share`): it imports the function the caller named,
runs it in a snapshot it opened when it started (with the same head), and sends what it
yields, one frame at a time, until the first process, which works through the same list
from the other end, has what it needs and ends it. Whichever process is less loaded does
more of that work: neither waits for the other.

PostgreSQL ledgers, small ledgers (:data:`PARALLEL_FROM`) and one-CPU machines are
checked in one process.
"""

from __future__ import annotations

import gc
import marshal
import os
import queue
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from pipetrail.hashing.canonical import member_json
from pipetrail.ledger.audit_model import ImpliedStart, Unmodelled, Unstreamed
from pipetrail.ledger.audit_replica import Replica, ledger_file
from pipetrail.ledger.chain_check import parse_plain_payload
from pipetrail.ledger.events import EventKind
from pipetrail.ledger.trusted import DerivedRowProblem

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Iterator
    from types import TracebackType
    from typing import IO

    from pipetrail.ledger.driver import Driver

__all__ = [
    "PARALLEL_FROM",
    "BESIDE_KINDS",
    "BESIDE_TABLES",
    "Beside",
    "Part",
    "main",
    "replay_beside",
    "start",
]

# Below this many events the second process costs more (its start-up) than it saves.
PARALLEL_FROM = 50_000
# The kinds only the second process parses and replays, and the tables it compares: the
# step tables, ``sources`` and the run tables (written by the run events alone).
BESIDE_KINDS = frozenset(
    {
        EventKind.STEP_STARTED,
        EventKind.STEP_COMPLETED,
        EventKind.STEP_CACHED,
        EventKind.STEP_FAILED,
        EventKind.SOURCE_OBSERVED,
        EventKind.RUN_STARTED,
        EventKind.RUN_COMPLETED,
        EventKind.RUN_FAILED,
        EventKind.RUN_CRASHED,
        EventKind.RUN_INTERRUPTED,
        EventKind.RUN_NAMED,
        EventKind.RUN_TAGGED,
        EventKind.RUN_UNTAGGED,
        EventKind.RUN_NOTED,
        EventKind.RUN_DELETED,
    }
)
BESIDE_TABLES = (
    "runs", "step_runs", "step_run_io", "sources", "run_params", "run_tags", "run_notes",
    "run_metrics", "run_deletions",
)  # fmt: skip
_KINDS = ", ".join(f"'{kind.value}'" for kind in sorted(BESIDE_KINDS))
# ``+kind``: scan in sequence order rather than through the index on kind. No projection
# reads an event's hashes (the first process checks them): they are read as ''.
_BESIDE_EVENTS = (
    "SELECT seq, ts, actor, kind, run_id, payload, '', '' FROM ledger.events "  # noqa: S608
    f"WHERE seq <= :head AND +kind IN ({_KINDS}) ORDER BY seq"
)
# What the model reads of the same events (see TableModel.add): seq, kind and the payload.
# Each value read costs a round of SQLite's and Python's locks (the sqlite3 module lets
# other threads run while it asks a value's type): the event's time and actor, which only
# a note's and a deletion's rows hold, are read for those events alone (_STAMP); the
# others' are None, as their rows leave them out. Read the plain way, not a row at a time
# through a function (pipetrail.ledger.sqlite_rows): for three values a row that costs
# about 3% more instructions than it saves.
_MODELLED_EVENTS = (
    "SELECT seq, kind, payload FROM ledger.events "  # noqa: S608
    f"WHERE seq <= :head AND +kind IN ({_KINDS}) ORDER BY seq"
)
_STAMPED = frozenset({EventKind.RUN_NOTED.value, EventKind.RUN_DELETED.value})
_STAMP = "SELECT ts, actor FROM ledger.events WHERE seq = ?"
_FETCH = 20_000
_STEP = 500
_NOT_AN_OBJECT = "its payload is not a JSON object"
_STARTED = EventKind.STEP_STARTED.value
_CLOSING = frozenset(
    {EventKind.STEP_COMPLETED.value, EventKind.STEP_CACHED.value, EventKind.STEP_FAILED.value}
)
_SORT = orjson.OPT_SORT_KEYS
# What parse_plain_payload's first attempt catches before it reads the text otherwise.
_UNPLAIN = (orjson.JSONDecodeError, orjson.JSONEncodeError, UnicodeEncodeError)
# The members a step's row is built from by name (projection_rows.step_values_at): a
# payload lacking one is one the projections reject.
_START_NEEDS = frozenset({"step_run_id", "run_id", "node_id", "step", "pipeline", "started_at"})


@dataclass(frozen=True)
class Part:
    """What the second process found.

    Attributes:
        rows: how many rows of its tables the events project.
        problems: the rows of its tables that disagree with the events.
        failure: the first event it read whose payload is not a JSON object, and why.
        unprojectable: the first event its replay rejects, and why.
        tables: the tables it compared.
    """

    rows: int
    problems: tuple[DerivedRowProblem, ...]
    failure: tuple[int, str] | None = None
    unprojectable: tuple[int, str] | None = None
    tables: tuple[str, ...] = BESIDE_TABLES


def replay_beside(
    file: str,
    head: tuple[int, str],
    *,
    model: bool = True,
    typed: bool = True,
    keep: list[object] | None = None,
) -> Part | None:
    """Replay a SQLite ledger's events of :data:`BESIDE_KINDS` up to ``head``; compare.

    Args:
        file: the ledger's SQLite file (opened read-only).
        head: the sequence number and hash of the last event to replay.
        model: check the tables against rows built in Python first (the replay then
            runs only when they differ, see :mod:`pipetrail.ledger.audit_model`).
        typed: with ``model``, check the number types of the stored rows too (False: the
            first process does, see :meth:`Replica.check_types`).
        keep: a list to append the model to, for a caller that exits without freeing
            its rows one by one (:func:`main`).

    Returns:
        What it found, or None when the file's head is not ``head`` (or the file cannot
        be attached).
    """
    was = gc.isenabled()
    gc.disable()  # many short-lived objects and no cycles (see pipetrail.ledger.audit)
    try:
        if model:
            try:
                try:
                    return _check(file, head, model=True, typed=typed, keep=keep, stream=True)
                except Unstreamed:  # an event changed a row already dropped: hold them all
                    return _check(file, head, model=True, typed=typed, keep=keep)
            except Unmodelled:
                pass
        return _check(file, head, model=False)  # the replay names the rows, the events
    finally:
        if was:
            gc.enable()


def _check(
    file: str,
    head: tuple[int, str],
    *,
    model: bool,
    typed: bool = True,
    keep: list[object] | None = None,
    stream: bool = False,
) -> Part | None:
    """:func:`replay_beside` with or without the model (see :class:`Replica`).

    ``stream``: with ``model``, the model compares most rows as the events go and drops
    them (see :class:`~pipetrail.ledger.audit_model.TableModel`).

    Raises:
        Unmodelled: with ``model``, when the modelled tables cannot be declared intact.
        Unstreamed: with ``stream``, when an event changes a row the model dropped.
    """
    replica = Replica(file=file, model=model, typed=typed, stream=stream)
    if keep is not None:
        keep.append(replica.model)
    try:
        if not replica.attached or not replica.shows(head):
            return None
        failure, unprojectable = _replay(replica, head[0], model=replica.model is not None)
        if replica.model is not None and replica.model.broken is not None:
            raise (Unstreamed if replica.model.unstreamed else Unmodelled)(replica.model.broken)
        if failure is not None or unprojectable is not None:
            return Part(0, (), failure, unprojectable)
        rows, problems = replica.compare(None, head, BESIDE_TABLES)
        return Part(rows, tuple(problems))
    finally:
        replica.close()


def _replay(
    replica: Replica, last: int, *, model: bool
) -> tuple[tuple[int, str] | None, tuple[int, str] | None]:
    """(the first payload that is not an object, the first event the replay rejects).

    ``model``: the replica models the tables (see :func:`_model`).
    """
    if model:
        return _model(replica, last), None
    unprojectable: tuple[int, str] | None = None
    cursor = replica.db.connection.execute(_BESIDE_EVENTS, {"head": last})
    try:
        while fetched := cursor.fetchmany(_FETCH):
            for at in range(0, len(fetched), _STEP):
                good: list[tuple[tuple[Any, ...], dict[str, Any] | None]] = []
                plain = True
                failure = None
                for row in fetched[at : at + _STEP]:
                    payload, written = _parse(row[5])
                    if type(payload) is not dict:
                        failure = (int(row[0]), _NOT_AN_OBJECT)
                        break
                    plain = plain and written
                    good.append((row, payload))
                if unprojectable is None:
                    unprojectable = replica.replay(good, plain=plain)
                if failure is not None:
                    return failure, unprojectable
    finally:
        cursor.close()
    return None, unprojectable


def _model(replica: Replica, last: int) -> tuple[int, str] | None:
    """:func:`_replay` into the replica's model: the first payload that is not an object.

    The events go to the model straight (it follows every kind of :data:`BESIDE_KINDS`),
    in the batches the replay takes, each as ``(seq, ts, actor, kind)`` and its payload
    (see :data:`_MODELLED_EVENTS`); a start directly followed by its closing event may be
    read off that event's payload (:class:`_Starts`).
    """
    model = replica.model
    assert model is not None  # noqa: S101 - only called with a model
    starts = _Starts()
    loads, dumps = orjson.loads, orjson.dumps
    connection: sqlite3.Connection = replica.db.connection
    cursor = connection.execute(_MODELLED_EVENTS, {"head": last})
    try:
        while fetched := cursor.fetchmany(_FETCH):
            for at in range(0, len(fetched), _STEP):
                good: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
                plain = True
                failure = None
                rows = fetched[at : at + _STEP]
                end = len(rows) - 1
                ahead: tuple[Any, bool] | None = None  # the next row's payload, parsed
                for i, (seq, kind, text) in enumerate(rows):
                    if ahead is not None:
                        (payload, written), ahead = ahead, None
                    elif kind == _STARTED and i < end and rows[i + 1][1] in _CLOSING:
                        ahead = _parse(rows[i + 1][2])
                        payload, written = starts.implied(text, *ahead), True
                        if payload is None:
                            payload, written = starts.parse(text)
                    else:  # _parse, its first attempt made here without a call
                        try:
                            payload = loads(text)
                            written = dumps(payload, option=_SORT) == text.encode("utf-8")
                        except _UNPLAIN:
                            written = False
                        if not written:
                            payload, written = _parse_otherwise(text)
                    if type(payload) is not dict and type(payload) is not ImpliedStart:
                        failure = (int(seq), _NOT_AN_OBJECT)
                        break
                    plain = plain and written
                    if kind in _STAMPED:
                        ts, actor = connection.execute(_STAMP, (seq,)).fetchone()
                        good.append(((seq, ts, actor, kind), payload))
                    else:
                        good.append(((seq, None, None, kind), payload))
                model.add(good, member_json if plain else None, plain=plain)
                if failure is not None:
                    return failure
    finally:
        cursor.close()
    return None


def _parse(text: Any) -> tuple[Any, bool]:
    """:func:`parse_plain_payload`, with (None, False) for text that is not JSON.

    Its first attempt (orjson reads the text and writes it back, keys sorted, byte for
    byte) is made here, without a call: it is what nearly every payload takes. Anything
    else is :func:`parse_plain_payload`'s to decide, from the start.
    """
    try:
        value = orjson.loads(text)
        if orjson.dumps(value, option=_SORT) == text.encode("utf-8"):
            return value, True
    except _UNPLAIN:
        pass
    return _parse_otherwise(text)


def _parse_otherwise(text: Any) -> tuple[Any, bool]:
    """:func:`_parse` of a text whose first attempt failed: :func:`parse_plain_payload` decides."""
    try:
        return parse_plain_payload(text)
    except ValueError:
        return None, False


class _Starts:
    """``step.started`` payloads read off their closing event's, where they are exactly that.

    A step's start and its closing event are usually next to each other among the events
    the second process reads, and the start's payload holds the same members as the
    closing event's, with the same values (those of every pipeline pipetrail runs).
    When the start's stored text is byte for byte what orjson writes, keys sorted, for
    those members of the closing event's payload, parsing the text would give exactly
    that dictionary (a member's text is the same text in both, and orjson reads the same
    text the same way), and it would round-trip (see :func:`parse_plain_payload`): it
    is used instead. The closing event's payload must round-trip itself, so that its
    members are what orjson reads from their text. The members' names are those of the
    last start parsed in full.
    """

    def __init__(self) -> None:
        self.keys: tuple[str, ...] | None = None

    def implied(self, text: Any, closing: Any, written: bool) -> ImpliedStart | None:
        """The start's payload read off the closing event's payload, or None."""
        keys = self.keys
        if keys is None or not written or type(closing) is not dict or type(text) is not str:
            return None
        try:  # a plain dict first: built and written faster than the subclass
            found = {key: closing[key] for key in keys}
        except KeyError:
            return None
        if orjson.dumps(found, option=_SORT) != text.encode("utf-8", "surrogatepass"):
            return None
        return ImpliedStart(found)

    def parse(self, text: Any) -> tuple[Any, bool]:
        """:func:`_parse`; a start that round-trips gives the members' names to read.

        Only a start holding every member its row is built from by name
        (:data:`_START_NEEDS`): a start read off its closing event is not modelled on
        its own, so one lacking them would not make the model give up.
        """
        payload, written = _parse(text)
        if written and type(payload) is dict and _START_NEEDS.issubset(payload):
            self.keys = tuple(payload)
        return payload, written


def main() -> None:
    """The second process: ``FILE SEQ HASH MODE [FUNCTION ARGS]`` as arguments.

    ``MODE``: ``replay`` replays without the model (see :func:`replay_beside`); ``model``
    uses it, and leaves the number types of the stored rows to the first process.
    Writes the :class:`Part` (``None`` when it could not check), one frame (:func:`_frame`).
    ``FUNCTION`` and ``ARGS`` (marshalled, in hex): the caller's share of its check
    (:class:`_Share`), whose snapshot is opened first; its items follow the part, a
    frame each, until they end or the first process ends this one. Then exits at once:
    freeing the model's rows one by one (a few tenths of a second on a million events)
    would only delay the first process's wait.
    """
    # Paused for good: the replay pauses it (see replay_beside), and resumed after it the
    # collector would go over every modelled row kept for the exit at each pass while the
    # share runs (a fifth of a second before the first batch of signatures).
    gc.disable()
    file, seq, digest, mode = sys.argv[1:5]
    head = (int(seq), digest)
    share = _Share(file, head, sys.argv[5], sys.argv[6]) if len(sys.argv) > 6 else None
    kept: list[object] = []
    try:
        part = replay_beside(file, head, model=mode != "replay", typed=False, keep=kept)
    except Exception:  # noqa: BLE001 - any failure: the first process checks it all itself
        part = None
    out = sys.stdout.buffer
    out.write(_frame(None if part is None else _plain(part)))
    out.flush()
    if share is not None:
        for item in share.items():
            out.write(item)
            out.flush()
    os._exit(0)


class _Share:
    """A caller's share of its check (:class:`~pipetrail.ledger.audit.Share`), run here.

    Its snapshot is opened when the process starts: the ledger's file read-only, in a
    transaction whose head must be ``head`` (the events the first process verified),
    which events appended during the replay do not change.
    """

    def __init__(self, file: str, head: tuple[int, str], function: str, args: str) -> None:
        import sqlite3
        import urllib.parse

        from pipetrail.ledger.driver import Driver

        self.db: Driver | None = None
        self.function, self.args = function, args
        try:
            uri = "file:" + urllib.parse.quote(file) + "?mode=ro"
            db = Driver(sqlite3.connect(uri, uri=True), "sqlite")
            db.execute("BEGIN")
            found = db.rows("SELECT seq, hash FROM ledger_head WHERE id = 1")
            if found and (int(found[0][0]), str(found[0][1])) == head:
                self.db = db
            else:
                db.close()
        except Exception:  # noqa: BLE001, S110 - any failure: the first process does it all
            pass

    def items(self) -> Iterator[bytes]:
        """The function's items, each one frame; they stop at the first failure of any kind."""
        if self.db is None:
            return
        import importlib

        try:
            module, _, name = self.function.partition(":")
            run = getattr(importlib.import_module(module), name)
            args = marshal.loads(bytes.fromhex(self.args))  # noqa: S302 - from the first process
            for item in run(self.db, *args):
                yield _frame(item)
        except Exception:  # noqa: BLE001, S110 - the first process does the rest itself
            pass


def _frame(value: Any) -> bytes:
    """``value`` marshalled, after its length (8 bytes, big-endian)."""
    data = marshal.dumps(value)
    return len(data).to_bytes(8, "big") + data


def _read_frame(stream: IO[bytes]) -> bytes | None:
    """The next frame's bytes; None at the end of the stream or in a cut frame."""
    size = stream.read(8)
    if len(size) != 8:
        return None
    data = stream.read(int.from_bytes(size, "big"))
    return data if len(data) == int.from_bytes(size, "big") else None


def _plain(part: Part) -> tuple[Any, ...]:
    problems = [
        (str(p.table), str(p.key), str(p.problem), tuple((str(c), h, w) for c, h, w in p.columns))
        for p in part.problems
    ]
    return (part.rows, problems, part.failure, part.unprojectable, part.tables)


def _part(found: Any) -> Part:
    rows, problems, failure, unprojectable, tables = found
    return Part(
        rows,
        tuple(DerivedRowProblem(*p) for p in problems),
        failure,
        unprojectable,
        tables,
    )


class Beside:
    """The second process, running; a context manager that ends it if still running.

    ``share``: it was given a share of the caller's check; its frames are then read as
    they come, by a thread of this process (see :meth:`_drain`).
    """

    def __init__(self, process: subprocess.Popen[bytes], *, share: bool = False) -> None:
        self._process = process
        self._part: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._items: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._answered = threading.Event()  # the part's frame (or the end) was read
        self._reader: threading.Thread | None = None
        if share:
            self._reader = threading.Thread(target=self._drain, daemon=True)
            self._reader.start()

    def _drain(self) -> None:
        """Read the process's frames as it writes them: the part, then the share's items.

        Read as they come, not when wanted: the first process takes the items while it
        works through the same list, and a pipe's buffer full of them would stop the
        second process until read.
        """
        assert self._process.stdout is not None  # noqa: S101 - stdout=PIPE
        try:
            while (frame := _read_frame(self._process.stdout)) is not None:
                if self._answered.is_set():
                    self._items.put(frame)
                else:
                    self._part.put(frame)
                    self._answered.set()
        except (OSError, ValueError):
            pass
        if not self._answered.is_set():
            self._part.put(None)
            self._answered.set()

    def arrived(self) -> list[Any]:
        """The share's items that arrived since the last call (does not wait)."""
        found = []
        while not self._items.empty():
            item = _loaded(self._items.get())
            if item is not None:
                found.append(item)
        return found

    def enough(self) -> None:
        """No more of the share's items are wanted: end the process if its part is in.

        Once the part was read the process only works on the share; before, it is left
        to its replay.
        """
        if self._answered.is_set() and self._process.poll() is None:
            self._process.kill()

    def result(self) -> Part | None:
        """Wait for what it found; None when it failed or saw another ledger.

        With a share, the process goes on with it: the part's frame is its answer.
        """
        if self._reader is not None:
            found = _loaded(self._part.get())
        else:
            assert self._process.stdout is not None  # noqa: S101 - stdout=PIPE
            frame = _read_frame(self._process.stdout)
            if self._process.wait() != 0:
                return None
            found = _loaded(frame)
        try:
            return None if found is None else _part(found)
        except (ValueError, TypeError):
            return None

    def __enter__(self) -> Beside:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process.poll() is None:
            self._process.kill()  # its answer is no longer wanted
        self._process.wait()
        if self._reader is not None:
            self._reader.join()  # the pipe ended with the process
        if self._process.stdout is not None:
            self._process.stdout.close()


def _loaded(frame: bytes | None) -> Any:
    """A frame's value (written by the process this one started); None if unreadable."""
    if frame is None:
        return None
    try:
        return marshal.loads(frame)  # noqa: S302 - written by the process this one started
    except (EOFError, ValueError, TypeError):
        return None


def start(
    db: Driver, *, model: bool = True, share: tuple[str, tuple[Any, ...]] | None = None
) -> Beside | None:
    """Start the second process's replay of ``db``'s snapshot, when worth it.

    Call inside the snapshot the first process reads: the head it reads now is the one
    the second process must see. The second process is this interpreter running this
    module's :func:`main` (``python -c``), with this process's copy of pipetrail first
    on its path; nothing else of the caller's program runs in it. ``model``: see
    :func:`replay_beside`; with it, the caller checks the number types of
    :data:`BESIDE_TABLES` in its snapshot (:meth:`Replica.check_types`), which the second
    process leaves out so both finish together. ``share``: a share of the caller's check,
    its function's name and arguments (see :class:`~pipetrail.ledger.audit.Share`);
    None too when the arguments cannot be marshalled.

    Returns:
        The running process, or None (PostgreSQL, a ledger not in a file, a small one,
        one CPU, or no process could be started).
    """
    if db.dialect != "sqlite" or (os.cpu_count() or 1) < 2 or not sys.executable:
        return None
    file = ledger_file(db)
    if file is None:
        return None
    found = db.rows("SELECT seq, hash FROM ledger_head WHERE id = 1")
    if not found or int(found[0][0]) < PARALLEL_FROM:
        return None
    head = (int(found[0][0]), str(found[0][1]))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_PACKAGE_ROOT, *filter(None, [env.get("PYTHONPATH")])])
    flags = ["model" if model else "replay"]
    if share is not None:
        try:
            flags += [share[0], marshal.dumps(share[1]).hex()]
        except ValueError:
            return None
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", _RUN, file, str(head[0]), head[1], *flags],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
    except OSError:
        return None
    return Beside(process, share=share is not None)


_RUN = "from pipetrail.ledger.audit_parallel import main; main()"
# The folder holding this copy of the pipetrail package.
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
