"""A run's privacy: its nodes' labels, and the project's sealing keys when it needs them.

:func:`run_privacy` plans the labels of a run's nodes once
(:func:`~pipetrail.execution.classification.plan_labels`) and opens the project's keys
(:meth:`~pipetrail.execution.project.Project.sealing_keys`) only when something sensitive
is stored or read, so runs without labels never touch a key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipetrail.execution.classification import NodeLabels, OutputPrivacy, plan_labels

if TYPE_CHECKING:
    from pipetrail.execution.run_state import RunState

__all__ = ["RunPrivacy", "run_privacy"]


class RunPrivacy:
    """The labels of a run's nodes, and the keys for its sensitive outputs.

    Args:
        state: the run.
    """

    def __init__(self, state: RunState) -> None:
        self._project = state.project
        self.labels: dict[str, NodeLabels] = plan_labels(state.graph)

    def task_privacy(self, node_id: str) -> OutputPrivacy | None:
        """What a node's task needs to store its outputs (None: every output public).

        Raises:
            StoreError: an output is sensitive and the keys cannot be opened (the key
                provider or keyring is wrong or missing); nothing has run yet.
        """
        labels = self.labels[node_id]
        if not labels.recorded():
            return None
        keys = self._project.sealing_keys(create=True) if labels.sensitive() else None
        return OutputPrivacy(labels=dict(labels.outputs), lowered=dict(labels.lowered), keys=keys)


def run_privacy(state: RunState) -> RunPrivacy:
    """The run's :class:`RunPrivacy`, planned on first use."""
    if state.privacy is None:
        state.privacy = RunPrivacy(state)
    found: RunPrivacy = state.privacy
    return found
