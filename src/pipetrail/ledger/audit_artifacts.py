"""``artifacts`` checked as the walk goes: each stored row written back as its event's payload.

Each ``artifact.recorded`` event inserts one ``artifacts`` row (the first under its
digest wins, a reseal replaces it), and a ledger pipetrail wrote stores them in the order
of their events. The model (:mod:`pipetrail.ledger.audit_model`) would parse each event's
payload, build the row it gives, and compare it with the stored row once the walk is over:
on a ledger of a million events, 450,000 payloads parsed, rows built and rows compared.

:class:`ArtifactMatch` goes the other way, reading the stored rows in order beside the
walk: the next stored row is the row the next artifact event gives when

* its values have their columns' own types, NULL only where the column allows it (the
  model's own check, :meth:`~pipetrail.ledger.audit_model._Table.check_many`);
* its ``first_seq`` and ``created_at`` are the event's sequence number and time;
* its ``meta`` text is what the projection writes for the member it is the text of
  (orjson's text of that value, or ``{}`` for an empty or false one);
* the event's payload is byte for byte the orjson text, keys sorted, of an object holding
  exactly the row's other values under their members' names, ``meta`` as that text;
* no row before it holds its digest.

Then parsing the payload gives those very values (each member's text is orjson's text
of the value, which orjson and the reference parser read back the same), and the row the
projection builds from them is the stored row: the event needs no parse and no row built.
The first event that does not match, for whatever reason (a reseal, a member the row does
not hold, a payload pipetrail did not write, a stored row edited, missing or out of
order), ends the matching: that event and every later one go through the model, which
holds the matched rows as the rows their events give (a later event's insert or reseal
sees them), and the whole table is then compared with the model's rows as before. When
every artifact event matched and no stored row is left over, the table is exactly what the
events give, and is not read again.

A matched row is not kept: only its digest is (to find a digest taken twice), and the rows
matched so far are read again, in the same order and the same snapshot, only when the
matching ends early and the model needs them. Holding the 450,000 rows of a million
events (over 200 MB) until the comparison cost more than reading them: each row was
written to fresh memory, then freed one by one once compared.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from pipetrail.hashing.canonical import MEMBER_OPTIONS
from pipetrail.ledger.audit_model import Unmodelled
from pipetrail.ledger.events import EventKind
from pipetrail.ledger.sqlite_rows import sqlite_batches

if TYPE_CHECKING:
    import sqlite3
    from collections.abc import Generator, Iterator, Sequence

    from pipetrail.ledger.audit_model import TableModel

__all__ = ["ARTIFACT", "ArtifactMatch"]

ARTIFACT = EventKind.ARTIFACT_RECORDED.value
# Stored rows read at a time: a few hundred rows (a few hundred kilobytes) stay in the
# CPU's caches and their memory is reused, where 5,000 were written to fresh memory each
# time (reading the 450,000 rows of a million events measured about a sixth less CPU).
_CHUNK = 500
_EMPTY: Iterator[tuple[Any, ...]] = iter(())
# The members of an artifact event's payload, in sorted order.
_MEMBERS = (
    "blob", "digest", "meta", "role", "run_id", "serializer", "size", "step_run_id", "type_name",
)  # fmt: skip


class ArtifactMatch:
    """The stored ``artifacts`` rows, read in order and matched with the artifact events.

    Args:
        model: the model the rows are kept in (its ``artifacts``), as the rows the events
            give.
        chunks: the stored rows in the order they were written, the model's columns
            (``TableModel.layout["artifacts"].columns``), read in the walk's snapshot a
            few hundred at a time (see :meth:`reading`).
        connection: the connection they are read on, in that snapshot.
    """

    def __init__(
        self,
        model: TableModel,
        chunks: Generator[list[tuple[Any, ...]], None, None],
        connection: sqlite3.Connection,
    ) -> None:
        self.layout = model.layout["artifacts"]
        self.rows = model.artifacts
        self.active = True  # every artifact event so far matched its stored row
        self.whole = False  # every artifact event matched, and no stored row was left over
        self._chunks: Generator[list[tuple[Any, ...]], None, None] | None = chunks
        self._read_again = connection
        self._chunk = _EMPTY
        self._taken: set[str] = set()  # the digests of the rows matched
        # meta texts found to be what the projection writes, each as the member it writes
        self._metas: dict[str, orjson.Fragment] = {}
        # The payload the next row gives, its members in the payload's (sorted) order.
        self._written: dict[str, Any] = dict.fromkeys(_MEMBERS)

    @classmethod
    def reading(cls, model: TableModel, connection: sqlite3.Connection) -> ArtifactMatch:
        """Matching the rows of ``connection``'s ``artifacts``, each handed over whole.

        (:func:`~pipetrail.ledger.sqlite_rows.sqlite_batches`.) The query runs now.

        Raises:
            sqlite3.Error: as the query does.
        """
        columns = ", ".join(model.layout["artifacts"].columns)
        chunks = sqlite_batches(connection, columns, "FROM artifacts", size=_CHUNK)
        return cls(model, chunks, connection)

    @property
    def count(self) -> int:
        """How many stored rows matched their events (each under its own digest)."""
        return len(self._taken)

    def take(self, event: Sequence[Any]) -> bool:
        """Whether ``event`` (a verified ``artifact.recorded`` row) is the next stored row's.

        ``event`` begins ``seq, ts, actor, kind, run_id, payload``. True: its row is the
        one the event gives (its digest is then taken); the event needs nothing more.
        False: the model must take it, and every later one (the matching has ended, the
        model holds the rows matched).

        The payload the row gives is written from one dict whose values are replaced for
        each row, keys in sorted order as the payload's are (orjson writes a dict's
        members in their order): it costs less than a dict made and freed per event.
        """
        if not self.active:
            return False
        stored = next(self._chunk, None)
        if stored is None:
            stored = self._read()
            if stored is None:  # none left: this event's row is missing
                self._end()
                return False
        digest, blob, serializer, type_name, size, meta, role, run, step, at, seq = stored
        if seq == event[0] and at == event[1]:
            member = self._metas.get(meta)
            if member is None:
                member = self._meta(meta)
            if member is not None:
                written = self._written
                written["blob"] = blob
                written["digest"] = digest
                written["meta"] = member
                written["role"] = role
                written["run_id"] = run
                written["serializer"] = serializer
                written["size"] = size
                written["step_run_id"] = step
                written["type_name"] = type_name
                text = event[5]
                try:
                    if (
                        type(text) is str
                        and orjson.dumps(written) == text.encode("utf-8", "surrogatepass")
                        and digest not in self._taken  # a digest taken before
                    ):
                        self._taken.add(digest)
                        return True
                except orjson.JSONEncodeError:
                    pass
        self._end()
        return False

    def _meta(self, meta: str) -> orjson.Fragment | None:
        """``meta`` as the member it is the text of, if it is the text the projection writes.

        That is orjson's text of the value it holds, or ``{}`` for an empty or false one
        (the projection writes the member's value, or an empty object for one that is
        false or missing). None: it is not.
        """
        try:
            if orjson.dumps(orjson.loads(meta) or {}, option=MEMBER_OPTIONS) != meta.encode():
                return None
        except (orjson.JSONDecodeError, orjson.JSONEncodeError, UnicodeEncodeError):
            return None
        member = self._metas[meta] = orjson.Fragment(meta)
        return member

    def _read(self) -> tuple[Any, ...] | None:
        """The first row of the next chunk of stored rows (None: none left, or it ended)."""
        if self._chunks is None:
            return None
        chunk = next(self._chunks, None)
        if not chunk:
            return None
        try:
            self.layout.check_many(chunk, plain=True)  # text read from SQLite is valid UTF-8
        except Unmodelled:
            self._end()  # a value of another type: the comparison names it
            return None
        self._chunk = iter(chunk)
        return next(self._chunk)

    def complete(self) -> bool:
        """Whether every artifact event matched and no stored row is left over.

        Asked again, it gives the same answer: the model never held the rows matched, so
        a second comparison must not read the table against it.
        """
        if self.whole:
            return True
        if not self.active:
            return False
        if next(self._chunk, None) is None and self._read() is None and self.active:
            self.stop()
            self.whole = True
            return True
        self._end()  # a stored row left over: the table is compared with the model's rows
        return False

    def _end(self) -> None:
        """End the matching early: the model gets the rows matched so far, as they are.

        They are read again in the order the matching read them, in the same snapshot:
        the first :attr:`count` stored rows, each the row its event gives.
        """
        if not self.active:
            return
        self.stop()
        if self._taken:
            again = self._read_again.execute(
                self.layout.select + "artifacts LIMIT ?", (len(self._taken),)
            )
            try:
                self.rows.update((row[0], row) for row in again)
            finally:
                again.close()

    def stop(self) -> None:
        """End the matching (the model takes every later event); stop reading the rows."""
        self.active = False
        self._chunk = _EMPTY
        if self._chunks is not None:
            self._chunks.close()  # its cursor too
            self._chunks = None
