"""A run's privacy: its nodes' labels, and the project's sealing keys when it needs them.

:func:`run_privacy` plans the labels of a run's nodes once
(:func:`~pipetrail.execution.classification.plan_labels`) and opens the project's keys
(:meth:`~pipetrail.execution.project.Project.sealing_keys`) only when something sensitive
is stored or read, so runs without labels never touch a key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.core.classification import is_sensitive, strictest
from pipetrail.execution.classification import (
    NodeLabels,
    OutputPrivacy,
    keyed_digests,
    plan_labels,
    seal_record,
)
from pipetrail.execution.records import blob_artifact

if TYPE_CHECKING:
    from pipetrail.execution.run_state import RunState
    from pipetrail.ledger.queries import Reader
    from pipetrail.store import StoredArtifact

__all__ = ["RunPrivacy", "recorded_labels", "run_privacy"]


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
        handles = None
        if is_sensitive(labels.inherited) or labels.sensitive():
            handles = strictest([labels.inherited, *labels.outputs.values()])
        keys = self._project.sealing_keys(create=True) if handles else None
        return OutputPrivacy(
            labels=dict(labels.outputs), lowered=dict(labels.lowered), keys=keys, handles=handles
        )

    def stored_logs(self, node_id: str, data: bytes) -> StoredArtifact:
        """Store a step's captured output: sealed when the step reads or writes sensitive data.

        What a step prints may show the data it handles, so the logs of such a step are
        sealed and recorded under a keyed digest like its outputs.
        """
        labels = self.labels[node_id]
        store = self._project.store
        if not (is_sensitive(labels.inherited) or labels.sensitive()):
            return blob_artifact(store.put_bytes(data), len(data), "bytes", "logs", {})
        from pipetrail.store.sealed import SealedStore  # only sensitive logs are sealed

        sealed = SealedStore(store, self._project.sealing_keys(create=True))
        blob = sealed.put_bytes(data)
        label = strictest([labels.inherited, *labels.outputs.values()])
        record = blob_artifact(blob, store.size(blob), "bytes", "logs", {})
        return seal_record(record, sealed, label)

    def recorded_ops(self, node_id: str, ops: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The data operations a step event records: digests keyed when it read sensitive data.

        A sample, split or privacy operation records the digests of the tables it read
        and wrote; for a step with a sensitive input or output those are keyed like the
        artifacts' (docs/adr/0023-keyed-digests.md), so they confirm no guess either.
        """
        labels = self.labels[node_id]
        if not (is_sensitive(labels.inherited) or labels.sensitive()):
            return ops
        keys = self._project.sealing_keys(create=True)
        return [keyed_digests(op, keys) for op in ops]


def run_privacy(state: RunState) -> RunPrivacy:
    """The run's :class:`RunPrivacy`, planned on first use."""
    if state.privacy is None:
        state.privacy = RunPrivacy(state)
    found: RunPrivacy = state.privacy
    return found


def recorded_labels(
    reader: Reader, run_id: str
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The labels a run recorded: per step run, and per source path.

    Returns:
        Step run id -> ``{"classification", "declassified"}`` (labelled steps only), and
        source path -> its label (labelled sources only).
    """
    from pipetrail.ledger.event_reads import closing_step_events, source_events

    steps = {
        event.step_run_id: {
            "classification": event.classification,
            "declassified": event.declassified,
        }
        for event in closing_step_events(reader, run_id)
        if event.classification
    }
    sources = {
        event.path: event.classification
        for event in source_events(reader, run_id)
        if event.classification
    }
    return steps, sources
