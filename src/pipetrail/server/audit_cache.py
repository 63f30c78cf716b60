"""The audit page's chain check, kept while the ledger's head stays where it was.

Re-hashing the whole ledger (``pipetrail audit verify``'s ledger check) takes as long as
the ledger is big, and the audit page is opened often. A server process keeps the result
of its last full check that found the ledger intact, with the head it saw (the newest
event's sequence number and hash) and when it ran, and answers from it while:

- the head is unchanged (an appended event moves it: the next load checks in full), and
- the check is younger than the maximum age (``pipetrail serve --audit-max-age``,
  5 minutes by default; 0 checks on every load), and
- the caller did not ask for a new check (the page's *Verify again now* button,
  ``?verify=now`` on the page and on ``GET /api/v1/audit/checkpoints``).

An edit of an old event row does not move the head (its stored hash is what the edit
fails to match), so no cheap key can see it: within the maximum age the page shows the
earlier verdict, *with the time of that full check*, and the button checks again at
once. A check that finds the ledger broken is not kept: every load checks again until
the ledger is restored. Each worker process keeps its own.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.core.clock import format_ts, utcnow

if TYPE_CHECKING:
    from pipetrail.read import Project

__all__ = ["DEFAULT_MAX_AGE", "ChainCheck", "ChainCheckCache", "ledger_head"]

DEFAULT_MAX_AGE = 300.0  # seconds


@dataclass(frozen=True)
class ChainCheck:
    """One full check of the ledger: its verdict, the head it saw, when and how long."""

    status: dict[str, Any]
    head: tuple[int, str | None]
    verified_at: str
    monotonic: float
    seconds: float

    def to_dict(self, *, cached: bool) -> dict[str, Any]:
        """The verdict with when it was made, and whether it was kept from before."""
        return self.status | {
            "verified_at": self.verified_at,
            "verify_seconds": round(self.seconds, 3),
            "head_seq": self.head[0],
            "cached": cached,
        }


def ledger_head(project: Project) -> tuple[int, str | None]:
    """The newest event's sequence number and stored hash ((0, None): no event)."""
    from pipetrail.ledger.governance_reads import event_at, head_seq

    db = project.ledger.db
    seq = head_seq(db)
    event = event_at(db, seq) if seq else None
    return seq, event.hash if event is not None else None


class ChainCheckCache:
    """The last full check that passed, per process (see the module docstring).

    Args:
        max_age: seconds a passing check is kept; 0 keeps none.
    """

    def __init__(self, max_age: float = DEFAULT_MAX_AGE) -> None:
        self.max_age = max_age
        self._kept: ChainCheck | None = None
        self._lock = threading.Lock()  # one full check at a time; the others wait for it

    def status(self, project: Project, *, fresh: bool = False) -> dict[str, Any]:
        """The chain's verdict: kept from the last check, or checked in full now.

        Args:
            project: the project (this thread's).
            fresh: check in full whatever is kept.
        """
        from pipetrail.server.audit_views import chain_status

        with self._lock:
            head = ledger_head(project)
            kept = self._kept
            if (
                not fresh
                and kept is not None
                and kept.head == head
                and time.monotonic() - kept.monotonic < self.max_age
            ):
                return kept.to_dict(cached=True)
            started = time.monotonic()
            verdict = chain_status(project)
            done = ChainCheck(
                verdict, head, format_ts(utcnow()), time.monotonic(), time.monotonic() - started
            )
            self._kept = done if verdict["ok"] and self.max_age > 0 else None
            return done.to_dict(cached=False)
