"""One typed record per event kind: the only place event payloads are parsed.

Every kind :class:`~pipetrail.ledger.events.EventKind` lists has a frozen dataclass here,
with the payload version it reads (:attr:`EventRecord.VERSION`). Its field declarations
say how the stored JSON object fills it (:mod:`pipetrail.ledger.payload_fields`): a field
whose metadata is ``REQUIRED`` is in every payload of the kind, the others (keys a kind
gained over time) fall back to their default, so events written by older versions parse
too; the declared type converts each value. :meth:`EventRecord.from_payload` reads any
kind that way, and :func:`parse_event` dispatches on the kind. Code outside the ledger
reads events through :mod:`pipetrail.ledger.read_model`, never their JSON text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from pipetrail.ledger.events import Event, EventKind
from pipetrail.ledger.payload_fields import REQUIRED, ReadPlan, plan_of, read_record, reads
from pipetrail.ledger.projection_rows import run_purpose

__all__ = [
    "AccessRecorded",
    "AlertDelivery",
    "ArtifactRecorded",
    "EventRecord",
    "GateChecked",
    "GovernanceAct",
    "KeyringKept",
    "KeysRotated",
    "ReproductionChecked",
    "RunEnded",
    "RunNamed",
    "RunDeleted",
    "RunNoted",
    "RunStarted",
    "RunTagged",
    "RunUntagged",
    "SourceObserved",
    "StepEvent",
    "StepStarted",
    "StoreCollected",
    "parse_event",
    "parse_payload",
]

Payload = dict[str, Any]


def _texts(values: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in values)


@dataclass(frozen=True)
class EventRecord:
    """What every event record has: the event's place in the chain and its run.

    Attributes:
        seq: the event's sequence number (0 when parsed from a payload alone).
        ts: when it was appended.
        kind: its kind.
        run_id: the run it belongs to, if any.
        payload: the parsed payload, whole (keys this version does not model included).
    """

    VERSION: ClassVar[int] = 1
    seq: int
    ts: str
    kind: str
    run_id: str | None
    payload: Payload = field(repr=False, compare=False)

    # Inherited fields a kind does not read from its payload (they keep their default).
    NOT_READ: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> Self:
        """Parse a payload of this record's kind, as its fields declare (``payload_fields``).

        Raises:
            KeyError: a required key is absent (``args[0]`` is the key).
            TypeError: a value cannot be converted to its field's declared type.
            ValueError: likewise.
        """
        plan = _PLANS.get(cls)
        if plan is None:
            plan = _PLANS[cls] = plan_of(cls, _PLACE, cls.NOT_READ)
        place = {"seq": seq, "ts": ts, "kind": kind, "run_id": p.get("run_id"), "payload": p}
        return read_record(cls, plan, p, place)


# The fields every record fills from the event itself, and each type's reading plan.
_PLACE = frozenset({"seq", "ts", "kind", "run_id", "payload"})
_PLANS: dict[type[EventRecord], ReadPlan] = {}


@dataclass(frozen=True)
class RunStarted(EventRecord):
    """``run.started``: what the run is (pipeline, params, seed, environment, name...)."""

    pipeline: str = field(default="", metadata=REQUIRED)
    pipeline_fingerprint: str = field(default="", metadata=REQUIRED)
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = field(default=0, metadata=REQUIRED)
    started_at: str = field(default="", metadata=REQUIRED)
    owner: str = ""
    host: str = ""
    git: dict[str, Any] | None = None
    environment: str | None = None
    steps_total: int = 0
    name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    purpose: str = field(default="run", metadata=reads(read=run_purpose))
    reproduces: str | None = None
    trace_id: str | None = None
    sweep: dict[str, Any] | None = None


@dataclass(frozen=True)
class RunEnded(EventRecord):
    """``run.completed``, ``run.failed``, ``run.crashed``, ``run.interrupted``.

    ``resource_deviations``: what a completed run's executed steps did out of the
    ordinary (``pipetrail.execution.resource_profile``); empty when nothing did.
    """

    ended_at: str = field(default="", metadata=REQUIRED)
    error: str | None = None
    closed_steps: dict[str, str] = field(default_factory=dict)
    resource_deviations: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class StepStarted(EventRecord):
    """``step.started``: a step run began executing."""

    step_run_id: str = field(default="", metadata=REQUIRED)
    node_id: str = field(default="", metadata=REQUIRED)
    step: str = field(default="", metadata=REQUIRED)
    pipeline: str = ""
    started_at: str = ""
    code_source: str | None = None


@dataclass(frozen=True)
class StepEvent(EventRecord):
    """``step.completed``, ``step.cached``, ``step.failed``: how a step run ended.

    Attributes:
        decision: the cache decision (``hit``, ``miss``...).
        outputs: output name -> digest (metric series and reports included).
        output_formats: output name -> how it is read (None before it was recorded).
        metrics: metric name -> ``{"digest", "count", "min", "max", "last"...}``.
        output_metrics: the numbers the step returned in dicts (``KEY`` or
            ``OUTPUT.KEY``); empty before they were recorded, and in cache hits (a hit's
            are those of the step run it reused).
        reports: report name -> digest.
        data_ops: the table operations (sampling, splits) the step recorded.
        contracts: the contract results the step recorded.
        code_source: the digest of the step's stored source text.
        classification: output name -> its label; empty when every output is public
            (and in events written before labels existed).
        declassified: output name -> ``{"from", "to", "by"}`` for outputs recorded less
            sensitive than their inputs, with the privacy operations that earned it.
    """

    step_run_id: str = field(default="", metadata=REQUIRED)
    node_id: str = field(default="", metadata=REQUIRED)
    step: str = field(default="", metadata=REQUIRED)
    pipeline: str = ""
    started_at: str = ""
    ended_at: str | None = None
    cache_key: str | None = None
    decision: str | None = None
    reason: str | None = None
    reused_step_run_id: str | None = None
    code_digest: str | None = None
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    output_formats: dict[str, Any] | None = None
    resources: dict[str, Any] | None = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    output_metrics: dict[str, float] = field(default_factory=dict)
    reports: dict[str, str] = field(default_factory=dict)
    data_ops: list[Any] = field(default_factory=list)
    contracts: Any = None
    code_source: str | None = None
    error: str | None = None
    classification: dict[str, str] = field(default_factory=dict)
    declassified: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ArtifactRecorded(EventRecord):
    """``artifact.recorded``: an artifact's digest, stored object and how it is read."""

    digest: str = field(default="", metadata=REQUIRED)
    blob: str = field(default="", metadata=REQUIRED)
    serializer: str = field(default="", metadata=REQUIRED)
    type_name: str = field(default="", metadata=REQUIRED)
    size: int = field(default=0, metadata=REQUIRED)
    role: str = field(default="", metadata=REQUIRED)
    meta: dict[str, Any] = field(default_factory=dict)
    step_run_id: str | None = None


@dataclass(frozen=True)
class SourceObserved(EventRecord):
    """``source.observed``: a source file or folder a run read, as it was then."""

    path: str = field(default="", metadata=REQUIRED)
    digest: str = field(default="", metadata=REQUIRED)
    size: int = field(default=0, metadata=REQUIRED)
    mtime_ns: int = field(default=0, metadata=REQUIRED)
    source_kind: str | None = field(default=None, metadata=reads(key="kind"))
    by_reference: bool = False
    # The source's label (None: public, and in events written before labels existed).
    classification: str | None = None


@dataclass(frozen=True)
class ReproductionChecked(EventRecord):
    """``reproduction.checked``: the verdict of re-executing a run (``report`` digest).

    Attributes:
        report: the digest of the stored report.
        original_run_id: the run that was re-executed (``run_id`` is the new run).
        verdict: the reproduction's verdict, as ``pipetrail reproduce`` printed it.
        ok: whether the run reproduced within tolerance.
    """

    report: str | None = None
    original_run_id: str | None = None
    verdict: str | None = None
    ok: bool = False


@dataclass(frozen=True)
class GateChecked(ReproductionChecked):
    """``gate.checked``: the verdict of ``pipetrail check`` (``report`` digest).

    Attributes:
        passed: whether the gate opened (None in events that did not say).
        failures: why it did not, one line each.
        baseline_run_id: the baseline the run was compared with, if any.
        drift: with a baseline, the drift found (``drifted``, ``gate``, ``origins``,
            ``baseline_runs``: the runs pooled as the baseline); None before drift was
            checked.
    """

    # A gate verdict shares the report but not a reproduction's verdict: those fields
    # keep their defaults whatever the payload holds.
    NOT_READ = frozenset({"original_run_id", "verdict", "ok"})

    passed: bool | None = None
    failures: tuple[str, ...] = field(default=(), metadata=reads(convert=_texts))
    baseline_run_id: str | None = None
    drift: dict[str, Any] | None = None


@dataclass(frozen=True)
class RunNamed(EventRecord):
    """``run.named``: the run's name, given after it started."""

    name: str = field(default="", metadata=REQUIRED)


@dataclass(frozen=True)
class RunTagged(EventRecord):
    """``run.tagged``: tags set on the run (a key set again is replaced)."""

    tags: dict[str, str] = field(default_factory=dict, metadata=REQUIRED)


@dataclass(frozen=True)
class RunUntagged(EventRecord):
    """``run.untagged``: tag keys removed from the run."""

    keys: tuple[str, ...] = field(default=(), metadata=REQUIRED)


@dataclass(frozen=True)
class RunNoted(EventRecord):
    """``run.noted``: a note added to the run."""

    text: str = field(default="", metadata=REQUIRED)


@dataclass(frozen=True)
class RunDeleted(EventRecord):
    """``run.deleted``: the run is marked deleted (its record stays), and why."""

    reason: str = field(default="", metadata=REQUIRED)


@dataclass(frozen=True)
class StoreCollected(EventRecord):
    """``store.collected``: what a garbage collection removed from the store.

    Attributes:
        objects: how many stored objects it removed.
        bytes: their size in bytes.
        removed_list: the digest of the stored list of every removed digest.
        grace_seconds: objects younger than this were spared.
    """

    objects: int = field(default=0, metadata=REQUIRED)
    bytes: int = field(default=0, metadata=REQUIRED)
    removed_list: str = field(default="", metadata=REQUIRED)
    grace_seconds: float = 0.0


@dataclass(frozen=True)
class AlertDelivery(EventRecord):
    """``alert.sent`` or ``alert.failed``: one alert rule's message, delivered or not.

    Attributes:
        rule: the ``[[alerts.rules]]`` name.
        event: what happened (``run.failed``, ``drift.detected``, ``gate.failed``,
            ``promotion.requested``, ``resource.deviation``).
        target: ``webhook`` or ``command``.
        destination: where it went, without secrets (a webhook's scheme, host and port;
            a command's program).
        attempts: how many times it was tried.
        status: the last HTTP status or exit code (None when there was no answer).
        error: why the last attempt failed (None when delivered).
        summary: the message's one-line summary.
    """

    rule: str = field(default="", metadata=REQUIRED)
    event: str = field(default="", metadata=REQUIRED)
    target: str = field(default="", metadata=REQUIRED)
    destination: str = ""
    attempts: int = field(default=0, metadata=REQUIRED)
    status: int | None = None
    error: str | None = None
    summary: str = ""


@dataclass(frozen=True)
class GovernanceAct(EventRecord):
    """A signed governance act: who signed it, with which key.

    The kinds ``user.*``, ``model.registered``, ``promotion.*``, ``alias.moved`` and
    ``decision.recorded`` (docs/adr/0019-governance-on-the-ledger.md). Their rules and
    signatures are checked by :mod:`pipetrail.governance.state`, which folds them from
    their stored text (what the signature covers); the rest stays in :attr:`payload`.
    """

    by: str = field(default="", metadata=REQUIRED)
    key_id: str = field(default="", metadata=REQUIRED)
    signature: str = field(default="", repr=False, metadata=REQUIRED)


@dataclass(frozen=True)
class KeysRotated(EventRecord):
    """``keys.rotated``: the data keys were wrapped under a new key encryption key.

    Attributes:
        old_keks: the ids of the key encryption keys retired.
        new_kek: the id of the key encryption key that wraps the data keys now.
        data_keys: the ids of the data keys wrapped again (no data was rewritten), or
            after a re-encryption the new data key.
        provider: the key provider's name.
        reencrypted: a re-encryption: a new data key sealed every sealed object again
            (docs/adr/0025-reencryption.md).
        objects: how many sealed objects the re-encryption sealed again.
        retired_data_keys: the data keys the re-encryption removed from the keyring.
    """

    old_keks: list[str] = field(default_factory=list, metadata=REQUIRED)
    new_kek: str = field(default="", metadata=REQUIRED)
    data_keys: list[str] = field(default_factory=list, metadata=REQUIRED)
    provider: str = ""
    reencrypted: bool = False
    objects: int = 0
    # A null here is an error (only an absent key reads as none retired).
    retired_data_keys: list[str] = field(default_factory=list, metadata=reads(null_is_empty=False))


@dataclass(frozen=True)
class KeyringKept(EventRecord):
    """``keys.keyring``: the project keyring as it is from now on (wrapped keys only).

    Attributes:
        keyring: the keyring document (data keys, digest key, a pending data key, each
            wrapped by a key encryption key that is never recorded).
    """

    keyring: dict[str, Any] = field(default_factory=dict, metadata=REQUIRED)


@dataclass(frozen=True)
class AccessRecorded(EventRecord):
    """``access.read`` or ``access.refused``: one read of sensitive content, or its refusal.

    Attributes:
        user: who read (the configured identity).
        label: the content's classification label.
        digest: the artifact's keyed digest (docs/adr/0023-keyed-digests.md).
        action: what read it (``run``, ``get``, ``logs``, ``read``, ``serve``).
        purpose: the purpose of the grant the read relied on (empty when none did).
        basis: what allowed it: ``role:admin``, ``grant:ID`` or ``ungoverned`` (a project
            without users); for a refusal, empty.
        reason: why a read was refused (empty for a read).
    """

    user: str = field(default="", metadata=REQUIRED)
    label: str = field(default="", metadata=REQUIRED)
    digest: str = field(default="", metadata=REQUIRED)
    action: str = ""
    purpose: str = ""
    basis: str = ""
    reason: str = ""


_BY_KIND: dict[str, Any] = {
    EventKind.RUN_STARTED: RunStarted,
    EventKind.RUN_COMPLETED: RunEnded,
    EventKind.RUN_FAILED: RunEnded,
    EventKind.RUN_CRASHED: RunEnded,
    EventKind.RUN_INTERRUPTED: RunEnded,
    EventKind.STEP_STARTED: StepStarted,
    EventKind.STEP_COMPLETED: StepEvent,
    EventKind.STEP_CACHED: StepEvent,
    EventKind.STEP_FAILED: StepEvent,
    EventKind.ARTIFACT_RECORDED: ArtifactRecorded,
    EventKind.SOURCE_OBSERVED: SourceObserved,
    EventKind.REPRODUCTION_CHECKED: ReproductionChecked,
    EventKind.GATE_CHECKED: GateChecked,
    EventKind.RUN_NAMED: RunNamed,
    EventKind.RUN_TAGGED: RunTagged,
    EventKind.RUN_UNTAGGED: RunUntagged,
    EventKind.RUN_NOTED: RunNoted,
    EventKind.RUN_DELETED: RunDeleted,
    EventKind.STORE_COLLECTED: StoreCollected,
    EventKind.USER_ADDED: GovernanceAct,
    EventKind.USER_GRANTED: GovernanceAct,
    EventKind.USER_REVOKED: GovernanceAct,
    EventKind.USER_KEY_ROTATED: GovernanceAct,
    EventKind.MODEL_REGISTERED: GovernanceAct,
    EventKind.PROMOTION_REQUESTED: GovernanceAct,
    EventKind.PROMOTION_APPROVED: GovernanceAct,
    EventKind.PROMOTION_REJECTED: GovernanceAct,
    EventKind.ALIAS_MOVED: GovernanceAct,
    EventKind.DECISION_RECORDED: GovernanceAct,
    EventKind.KEYS_ROTATED: KeysRotated,
    EventKind.KEYS_KEYRING: KeyringKept,
    EventKind.ALERT_SENT: AlertDelivery,
    EventKind.ALERT_FAILED: AlertDelivery,
    EventKind.ACCESS_GRANTED: GovernanceAct,
    EventKind.ACCESS_REVOKED: GovernanceAct,
    EventKind.ACCESS_READ: AccessRecorded,
    EventKind.ACCESS_REFUSED: AccessRecorded,
}


def parse_payload(kind: str, payload: str | Payload, *, seq: int = 0, ts: str = "") -> EventRecord:
    """Return the typed record of one event's payload (JSON text or already parsed).

    Raises:
        ValueError: the kind is unknown to this version, or the payload lacks a key the
            kind always has.
    """
    p = json.loads(payload) if isinstance(payload, str) else payload
    record_type = _BY_KIND.get(kind)
    if record_type is None:
        raise ValueError(f"event kind {kind!r} is unknown to this version of pipetrail")
    try:
        record: EventRecord = record_type.from_payload(seq, ts, kind, p)
    except KeyError as exc:
        raise ValueError(f"a {kind} event lacks its {exc.args[0]!r} field") from exc
    return record


def parse_event(event: Event) -> EventRecord:
    """Return the typed record of an appended event.

    Raises:
        ValueError: as :func:`parse_payload`.
    """
    return parse_payload(event.kind, event.payload_text, seq=event.seq, ts=event.ts)
