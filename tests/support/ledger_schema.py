"""What the ledger migration tests share: step events to fill a store, and going back a revision."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.ledger import EventDraft, EventKind

if TYPE_CHECKING:
    from pipetrail.ledger.ledger import Ledger

AT = "2026-01-01T00:00:00.000000Z"


def step_event(
    kind: EventKind,
    step_run_id: str,
    *,
    run_id: str,
    node_id: str,
    closing: dict[str, Any],
    **extra: Any,
) -> EventDraft:
    """A step run's event: ``closing`` and the end time added unless it is its start."""
    payload = {
        "step_run_id": step_run_id,
        "run_id": run_id,
        "node_id": node_id,
        "step": node_id,
        "pipeline": "p",
        "started_at": AT,
        **extra,
    }
    if kind != EventKind.STEP_STARTED:
        payload.update(ended_at=AT, **closing)
    return EventDraft(kind, payload, run_id=run_id)


def downgrade(ledger: Ledger, revision: str) -> None:
    """Take the ledger's schema back to ``revision`` (as an older pipetrail left it)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", "pipetrail.ledger:migrations")
    with ledger.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)
