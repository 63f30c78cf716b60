"""The metadata store: a hash-chained, append-only event ledger and its projections.

Owns: the SQL schema and migrations, appending events, projections, verification and
read queries. Must not import pipetrail.store, capture, execution or cli.
"""

from __future__ import annotations

from pipetrail.ledger.events import Event as Event
from pipetrail.ledger.events import EventDraft as EventDraft
from pipetrail.ledger.events import EventKind as EventKind
from pipetrail.ledger.open import open_reader as open_reader
from pipetrail.ledger.queries import Reader as Reader

__all__ = ["Event", "EventDraft", "EventKind", "Reader", "open_reader"]
