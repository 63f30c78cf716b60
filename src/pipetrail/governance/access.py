"""Reads of sensitive content: allowed by role or grant, and every one recorded.

:class:`ReadGate` is the project's access gate (:mod:`pipetrail.core.access`):
:meth:`~pipetrail.execution.project.Project.store_for` asks it before it decrypts a
sealed artifact, whether a step consumes it in a run, ``pipetrail get`` or ``logs``
writes it out, or the Python API loads it. The reader is the configured identity
(:func:`~pipetrail.governance.identity.current_user`). The rule:

* a project without users (no governance set up) reads freely, each read recorded as by
  the configured identity with the basis ``ungoverned``;
* otherwise an admin reads (basis ``role:admin``), and so does a user holding an open
  grant for the content's label (basis ``grant:ID``, the grant's purpose recorded);
  anyone else is refused, and the refusal is recorded before the error is raised.

Each read or refusal is one ``access.read`` / ``access.refused`` event (typed record
:class:`~pipetrail.ledger.event_records.AccessRecorded`): who, when, the artifact's keyed
digest, its label, what read it and the purpose. ``pipetrail access log`` lists them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.core.clock import utcnow
from pipetrail.errors import PermissionDeniedError
from pipetrail.governance.grants import read_basis
from pipetrail.governance.identity import current_user
from pipetrail.governance.roles import Role
from pipetrail.ledger.events import EventDraft, EventKind

if TYPE_CHECKING:
    from pipetrail.execution.project import Project
    from pipetrail.governance.state import GovernanceState
    from pipetrail.store import StoredArtifact

__all__ = ["UNKNOWN_LABEL", "ReadGate"]

#: The label recorded for sealed content whose label was not recorded: only admins read it.
UNKNOWN_LABEL = "unknown"
_LABEL_KEY = "classification"


class ReadGate:
    """The access gate of one project (the governance state is read once).

    Args:
        project: the project whose ledger holds the users, grants and read records.
        user: the reading identity (default: the configured one).
    """

    def __init__(self, project: Project, *, user: str | None = None) -> None:
        self.project = project
        self._user = user
        self._state: GovernanceState | None = None

    @property
    def user(self) -> str:
        """The reading identity."""
        if self._user is None:
            self._user = current_user()
        return self._user

    def state(self) -> GovernanceState:
        """The governance state (users, roles, grants), folded on first use and kept."""
        if self._state is None:
            from pipetrail.governance.state import read_state
            from pipetrail.governance.verified import user_cache

            state = read_state(self.project.reader(), user_cache(self.project.config.metadata_url))
            state.require_intact()
            self._state = state
        return self._state

    def label_of(self, record: StoredArtifact) -> str:
        """The label of a sealed artifact: from its record, else from the ledger."""
        label = record.meta.get(_LABEL_KEY)
        if not label:
            found = self.project.reader().artifact(record.digest)
            label = ((found or {}).get("meta") or {}).get(_LABEL_KEY)
        return str(label) if label else UNKNOWN_LABEL

    def check(self, record: StoredArtifact, *, action: str, run_id: str | None) -> None:
        """Allow and record the read of ``record``, or record its refusal and raise.

        Raises:
            PermissionDeniedError: names the reader, the artifact, its label and how to
                get a grant.
        """
        label = self.label_of(record)
        state = self.state()
        entry: dict[str, Any] = {
            "user": self.user,
            "label": label,
            "digest": record.digest,
            "action": action,
            "purpose": "",
            "basis": "",
            "reason": "",
        }
        if not state.users:
            entry["basis"] = "ungoverned"
        else:
            basis = read_basis(state, self.user, label, utcnow().date().isoformat())
            if isinstance(basis, Role):
                entry["basis"] = f"role:{basis.value}"
            elif basis is not None:
                entry.update(basis=f"grant:{basis.grant_id}", purpose=basis.purpose)
        if entry["basis"]:
            self._record(EventKind.ACCESS_READ, entry, run_id)
            return
        known = self.user in state.users
        entry["reason"] = f"no open grant for {label}" if known else "not a user of this project"
        self._record(EventKind.ACCESS_REFUSED, entry, run_id)
        who = self.user if known else f"{self.user} (not a user of this project)"
        add = "" if known else f"`pipetrail user add {self.user} --key PUBLIC_KEY`, then "
        raise PermissionDeniedError(
            f"{who} may not read artifact {record.digest}, labelled {label}: reading "
            f"{label} content needs the admin role or an open grant for {label}; an admin "
            f"can give one with {add}`pipetrail grant {self.user} --label {label} --purpose "
            "TEXT [--until YYYY-MM-DD]`. The refusal is recorded (`pipetrail access log`)"
        )

    def _record(self, kind: EventKind, entry: dict[str, Any], run_id: str | None) -> None:
        self.project.ledger.append([EventDraft(kind, entry, run_id)])
