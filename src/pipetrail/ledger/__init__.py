"""The metadata store: a hash-chained, append-only event ledger and its projections.

Owns: the SQL schema and migrations, appending events, projections, verification and
read queries. Must not import pipetrail.store, capture, execution or cli.

The names below are loaded on first use: importing a module of this package that needs
no database (:mod:`~pipetrail.ledger.events`, :mod:`~pipetrail.ledger.merkle`, which an
offline audit bundle's verifier uses) does not load the database layer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipetrail.ledger.events import Event as Event
    from pipetrail.ledger.events import EventDraft as EventDraft
    from pipetrail.ledger.events import EventKind as EventKind
    from pipetrail.ledger.open import open_reader as open_reader
    from pipetrail.ledger.queries import Reader as Reader

__all__ = ["Event", "EventDraft", "EventKind", "Reader", "open_reader"]

_WHERE = {
    "Event": "pipetrail.ledger.events",
    "EventDraft": "pipetrail.ledger.events",
    "EventKind": "pipetrail.ledger.events",
    "Reader": "pipetrail.ledger.queries",
    "open_reader": "pipetrail.ledger.open",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
