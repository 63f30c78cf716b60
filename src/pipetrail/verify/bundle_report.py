"""The human-readable report inside an audit bundle (``report.md``).

Who did what, when: the runs in scope (pipeline, who ran it, when, how it ended, its
code and environment fingerprints when recorded) and every governance act (who
registered, requested, approved, rejected, moved an alias or recorded a decision). The
report is a reading aid: what the auditor's verdict rests on is the signed events, the
proofs and the checkpoint, which ``pipetrail audit verify-bundle`` checks.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipetrail.governance.checkpoint import Checkpoint
    from pipetrail.ledger.events import Event

__all__ = ["markdown_report"]

_SHOWN = ("model", "version", "alias", "request_id", "risk", "role", "user", "comment", "text")


def _content(event: Event) -> dict[str, Any]:
    try:
        value = json.loads(event.payload_text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_report(
    scope: dict[str, Any],
    checkpoint: Checkpoint,
    events: list[Event],
    statuses: dict[str, str],
    not_attested: dict[str, str],
) -> str:
    """The report's Markdown text."""
    what = f"model {scope['name']}" if scope["kind"] == "model" else f"run {scope['name']}"
    if scope.get("version"):
        what += f" version {scope['version']}"
    lines = [
        f"# Audit bundle: {what}",
        "",
        f"Ledger {checkpoint.origin}: checkpoint of {checkpoint.size} events at "
        f"{checkpoint.time}. {len(events)} events in this bundle, each with its proof of "
        "inclusion in that checkpoint.",
        "",
        "Verify with `pipetrail audit verify-bundle THIS.tar --key NAME=ed25519:KEY` "
        "(the keys you trust, obtained apart from this file).",
        "",
        "## Runs",
        "",
        "| run | pipeline | by | started | status | attested |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in events:
        if row.kind != "run.started" or not row.run_id:
            continue
        p = _content(row)
        run = row.run_id
        attested = "no: " + not_attested[run] if run in not_attested else "yes"
        lines.append(
            f"| {run} | {_cell(p.get('pipeline', '?'))} | {_cell(row.actor)} | "
            f"{row.ts} | {statuses.get(run, '?')} | {_cell(attested)} |"
        )
    lines += ["", "## Governance", "", "| event | time | act | by | about |"]
    lines.append("| --- | --- | --- | --- | --- |")
    for row in events:
        p = _content(row)
        if "signature" not in p:
            continue
        about = ", ".join(f"{k} {_cell(p[k])}" for k in _SHOWN if p.get(k) not in (None, ""))
        lines.append(f"| {row.seq} | {row.ts} | {row.kind} | {_cell(p.get('by'))} | {about} |")
    return "\n".join(lines) + "\n"
