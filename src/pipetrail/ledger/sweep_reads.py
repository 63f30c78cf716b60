"""The read model of sweeps: which runs a sweep made, from their ``run.started`` field.

A run made by a sweep records ``sweep = {"id", "index", "size"}`` in its ``run.started``
event; the ``runs`` projection keeps it in the run's ``record`` column (canonical JSON),
so no column or migration is needed. Imports nothing above the ledger.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pipetrail.ledger.read_model import kept_runs_condition

if TYPE_CHECKING:
    from pipetrail.ledger.queries import Reader

__all__ = ["sweep_places"]


def sweep_places(reader: Reader, sweep_id: str) -> list[tuple[str, dict[str, Any]]]:
    """``(run_id, sweep field)`` of every kept run whose ``run.started`` names ``sweep_id``.

    Ordered by run id. Deleted runs are left out, as in every run listing.
    """
    # The record column is canonical JSON (sorted keys, no spaces), so the field reads
    # ``"sweep":{"id":"ID",...``; LIKE narrows the scan and the parsed record decides
    # (an id holding ``_`` or ``%`` may match more rows than its own).
    rows = reader.fetch(
        "SELECT r.run_id, r.record FROM runs r "  # noqa: S608 - constant text
        f"WHERE {kept_runs_condition('r')} AND r.record LIKE :pattern ORDER BY r.run_id",
        {"pattern": f'%"sweep":{{"id":"{sweep_id}",%'},
    )
    found = []
    for row in rows:
        record = row["record"]
        place = (json.loads(record) if isinstance(record, str) else record or {}).get("sweep")
        if isinstance(place, dict) and place.get("id") == sweep_id:
            found.append((str(row["run_id"]), place))
    return found
