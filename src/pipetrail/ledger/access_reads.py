"""Reading the record of access to sensitive content: each read and each refusal.

``access.read`` and ``access.refused`` events (written by
:class:`~pipetrail.governance.access.ReadGate`) are read here as typed
:class:`~pipetrail.ledger.event_records.AccessRecorded` records, oldest first.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from pipetrail.ledger.event_records import AccessRecorded, parse_payload
from pipetrail.ledger.events import EventKind

if TYPE_CHECKING:
    from pipetrail.ledger.queries import Reader

__all__ = ["access_records"]

_RECORDS = (
    "SELECT seq, ts, kind, run_id, payload FROM events "  # noqa: S608 - constant kinds
    f"WHERE kind IN ('{EventKind.ACCESS_READ}', '{EventKind.ACCESS_REFUSED}') ORDER BY seq"
)


def access_records(reader: Reader, *, label: str | None = None) -> list[AccessRecorded]:
    """Every recorded read and refusal of sensitive content, oldest first.

    Args:
        reader: the project's reader.
        label: keep only the records of content with this label.
    """
    found: list[AccessRecorded] = []
    for row in reader.fetch(_RECORDS):
        record = parse_payload(str(row["kind"]), row["payload"], seq=int(row["seq"]), ts=row["ts"])
        if not isinstance(record, AccessRecorded):  # pragma: no cover - the kind decides
            raise TypeError(f"event {row['seq']} is not an access record")
        if label is None or record.label == label:
            found.append(dataclasses.replace(record, run_id=row["run_id"]))
    return found
