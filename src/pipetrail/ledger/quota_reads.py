"""Reads for quotas and resource profiles: steps executing now, CPU used today, history.

Read from the ``step_runs`` and ``runs`` projections: the ``resources`` column holds
what each executed step run recorded (``cpu_ns``, ``wall_ns``...), and a run's ``owner``
says who ran it. The CPU a day's step runs used is read in full once, then only from
the step events appended since (:func:`cpu_seconds_after`, a range of the events' primary
key), so a run checking a quota before each step does not read the day again each
time. Imports nothing above the ledger.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from pipetrail.ledger.events import EventKind

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pipetrail.ledger.events import EventDraft
    from pipetrail.ledger.queries import Reader

__all__ = [
    "cpu_seconds_after",
    "cpu_seconds_queued",
    "cpu_seconds_since",
    "executing_step_runs",
    "newest_seq",
    "recent_step_resources",
]


def _decoded(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def executing_step_runs(reader: Reader) -> list[tuple[str, str]]:
    """``(run_id, owner)`` of every step run recorded as executing in a running run."""
    rows = reader.fetch_tuples(
        "SELECT s.run_id, r.owner FROM step_runs s JOIN runs r ON r.run_id = s.run_id "
        "WHERE s.status = 'running' AND r.status = 'running'"
    )
    return [(str(run_id), str(owner)) for run_id, owner in rows]


def cpu_seconds_since(reader: Reader, since: str) -> list[tuple[str, float]]:
    """``(owner, CPU seconds)`` of each step run that ended at or after ``since``.

    ``since`` is a timestamp as events record them (``2026-12-06T00:00:00.000000Z``).
    Step runs that recorded no CPU time (cache hits) are left out.
    """
    rows = reader.fetch_tuples(
        "SELECT r.owner, s.resources FROM step_runs s JOIN runs r ON r.run_id = s.run_id "
        "WHERE s.ended_at >= :since AND s.resources IS NOT NULL",
        {"since": since},
    )
    found = []
    for owner, resources in rows:
        cpu_ns = _decoded(resources).get("cpu_ns")
        if isinstance(cpu_ns, int | float) and not isinstance(cpu_ns, bool) and cpu_ns > 0:
            found.append((str(owner), float(cpu_ns) / 1e9))
    return found


def newest_seq(reader: Reader) -> int:
    """The sequence number of the newest event (0 for an empty ledger)."""
    rows = reader.fetch_tuples("SELECT MAX(seq) FROM events")
    return int(rows[0][0] or 0) if rows else 0


def cpu_seconds_after(
    reader: Reader, after: int, since: str
) -> tuple[list[tuple[str, float]], int]:
    """What :func:`cpu_seconds_since` adds once the events up to ``after`` were counted.

    The step runs a ``step.completed`` or ``step.failed`` event after ``after`` ended,
    at or after ``since``, with the CPU time that event records: the very values the
    projection's ``resources`` column takes from it.

    Returns:
        ``(owner, CPU seconds)`` pairs, and the newest event's sequence number (the
        ``after`` of the next call).
    """
    head = newest_seq(reader)
    if head <= after:
        return [], after
    rows = reader.fetch_tuples(
        "SELECT r.owner, e.payload FROM events e JOIN runs r ON r.run_id = e.run_id "
        "WHERE e.seq > :after AND e.seq <= :head "
        "AND e.kind IN ('step.completed', 'step.failed')",
        {"after": after, "head": head},
    )
    found = []
    for owner, text in rows:
        payload = _decoded(text)
        ended = payload.get("ended_at")
        if not isinstance(ended, str) or ended < since:
            continue
        cpu_ns = _decoded(payload.get("resources")).get("cpu_ns")
        if isinstance(cpu_ns, int | float) and not isinstance(cpu_ns, bool) and cpu_ns > 0:
            found.append((str(owner), float(cpu_ns) / 1e9))
    return found, head


def cpu_seconds_queued(drafts: Sequence[EventDraft], since: str) -> float:
    """CPU seconds the step-ending drafts record that ended at or after ``since``.

    ``drafts`` are events queued for a run's next append: its ``step.completed`` and
    ``step.failed`` count, as they will once appended.
    """
    seconds = 0.0
    for draft in drafts:
        if draft.kind not in (EventKind.STEP_COMPLETED, EventKind.STEP_FAILED):
            continue
        payload = draft.payload
        cpu_ns = _decoded(payload.get("resources")).get("cpu_ns")
        ended = payload.get("ended_at")
        if not isinstance(ended, str) or ended < since:
            continue
        if isinstance(cpu_ns, int | float) and not isinstance(cpu_ns, bool) and cpu_ns > 0:
            seconds += float(cpu_ns) / 1e9
    return seconds


def recent_step_resources(
    reader: Reader, pipeline: str, before_run: str, node_ids: Sequence[str], runs: int
) -> dict[str, list[dict[str, Any]]]:
    """What each of ``node_ids`` used in the pipeline's last ``runs`` completed runs.

    Only ordinary runs (``purpose = 'run'``) that started before ``before_run`` count,
    and only the step runs that executed and completed there.

    Returns:
        node id -> the ``resources`` records, newest run first.
    """
    if not node_ids:
        return {}
    earlier = reader.fetch_tuples(
        "SELECT run_id FROM runs WHERE pipeline = :pipeline AND status = 'completed' "
        "AND purpose = 'run' AND run_id < :before ORDER BY run_id DESC LIMIT :limit",
        {"pipeline": pipeline, "before": before_run, "limit": runs},
    )
    run_ids = [str(row[0]) for row in earlier]
    if not run_ids:
        return {}
    names = {f"r{i}": run_id for i, run_id in enumerate(run_ids)}
    rows = reader.fetch_tuples(
        "SELECT s.node_id, s.resources, s.run_id FROM step_runs s "  # noqa: S608 - placeholders
        f"WHERE s.run_id IN ({', '.join(':' + k for k in names)}) "
        "AND s.status = 'completed' AND s.resources IS NOT NULL",
        names,
    )
    wanted = set(node_ids)
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for node_id, resources, run_id in rows:
        if node_id in wanted:
            found.setdefault(str(node_id), []).append((str(run_id), _decoded(resources)))
    return {
        node: [record for _, record in sorted(items, key=lambda item: item[0], reverse=True)]
        for node, items in found.items()
    }
