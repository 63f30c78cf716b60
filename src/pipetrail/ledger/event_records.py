"""One typed record per event kind: the only place event payloads are parsed.

Every kind :class:`~pipetrail.ledger.events.EventKind` lists has a frozen dataclass here,
with the payload version it reads (:attr:`EventRecord.VERSION`) and a ``from_payload``
that takes the stored JSON object. Keys a kind gained over time are optional, so events
written by older versions parse too; :func:`parse_event` dispatches on the kind. Code
outside the ledger reads events through :mod:`pipetrail.ledger.read_model`, never their
JSON text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pipetrail.ledger.events import Event, EventKind
from pipetrail.ledger.projections import run_purpose

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

    @classmethod
    def _base(cls, seq: int, ts: str, kind: str, p: Payload) -> dict[str, Any]:
        return {"seq": seq, "ts": ts, "kind": kind, "run_id": p.get("run_id"), "payload": p}


@dataclass(frozen=True)
class RunStarted(EventRecord):
    """``run.started``: what the run is (pipeline, params, seed, environment, name...)."""

    pipeline: str = ""
    pipeline_fingerprint: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    started_at: str = ""
    owner: str = ""
    host: str = ""
    git: dict[str, Any] | None = None
    environment: str | None = None
    steps_total: int = 0
    name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    purpose: str = "run"
    reproduces: str | None = None
    trace_id: str | None = None
    sweep: dict[str, Any] | None = None

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> RunStarted:
        """Parse a ``run.started`` payload."""
        return cls(
            **cls._base(seq, ts, kind, p),
            pipeline=p["pipeline"],
            pipeline_fingerprint=p["pipeline_fingerprint"],
            params=dict(p.get("params") or {}),
            seed=int(p["seed"]),
            started_at=p["started_at"],
            owner=p.get("owner", ""),
            host=p.get("host", ""),
            git=p.get("git"),
            environment=p.get("environment"),
            steps_total=int(p.get("steps_total", 0)),
            name=p.get("name"),
            tags=dict(p.get("tags") or {}),
            purpose=run_purpose(p),
            reproduces=p.get("reproduces"),
            trace_id=p.get("trace_id"),
            sweep=p.get("sweep"),
        )


@dataclass(frozen=True)
class RunEnded(EventRecord):
    """``run.completed``, ``run.failed``, ``run.crashed``, ``run.interrupted``.

    ``resource_deviations``: what a completed run's executed steps did out of the
    ordinary (``pipetrail.execution.resource_profile``); empty when nothing did.
    """

    ended_at: str = ""
    error: str | None = None
    closed_steps: dict[str, str] = field(default_factory=dict)
    resource_deviations: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> RunEnded:
        """Parse a run-ending payload."""
        return cls(
            **cls._base(seq, ts, kind, p),
            ended_at=p["ended_at"],
            error=p.get("error"),
            closed_steps=dict(p.get("closed_steps") or {}),
            resource_deviations=list(p.get("resource_deviations") or []),
        )


@dataclass(frozen=True)
class StepStarted(EventRecord):
    """``step.started``: a step run began executing."""

    step_run_id: str = ""
    node_id: str = ""
    step: str = ""
    pipeline: str = ""
    started_at: str = ""
    code_source: str | None = None

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> StepStarted:
        """Parse a ``step.started`` payload."""
        return cls(
            **cls._base(seq, ts, kind, p),
            step_run_id=p["step_run_id"],
            node_id=p["node_id"],
            step=p["step"],
            pipeline=p.get("pipeline", ""),
            started_at=p.get("started_at", ""),
            code_source=p.get("code_source"),
        )


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

    step_run_id: str = ""
    node_id: str = ""
    step: str = ""
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

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> StepEvent:
        """Parse a step's closing payload."""
        return cls(
            **cls._base(seq, ts, kind, p),
            step_run_id=p["step_run_id"],
            node_id=p["node_id"],
            step=p["step"],
            pipeline=p.get("pipeline", ""),
            started_at=p.get("started_at", ""),
            ended_at=p.get("ended_at"),
            cache_key=p.get("cache_key"),
            decision=p.get("decision"),
            reason=p.get("reason"),
            reused_step_run_id=p.get("reused_step_run_id"),
            code_digest=p.get("code_digest"),
            inputs=dict(p.get("inputs") or {}),
            outputs=dict(p.get("outputs") or {}),
            output_formats=p.get("output_formats"),
            resources=p.get("resources"),
            metrics=dict(p.get("metrics") or {}),
            output_metrics=dict(p.get("output_metrics") or {}),
            reports=dict(p.get("reports") or {}),
            data_ops=list(p.get("data_ops") or []),
            contracts=p.get("contracts"),
            code_source=p.get("code_source"),
            error=p.get("error"),
            classification=dict(p.get("classification") or {}),
            declassified=dict(p.get("declassified") or {}),
        )


@dataclass(frozen=True)
class ArtifactRecorded(EventRecord):
    """``artifact.recorded``: an artifact's digest, stored object and how it is read."""

    digest: str = ""
    blob: str = ""
    serializer: str = ""
    type_name: str = ""
    size: int = 0
    role: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    step_run_id: str | None = None

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> ArtifactRecorded:
        """Parse an ``artifact.recorded`` payload."""
        return cls(
            **cls._base(seq, ts, kind, p),
            digest=p["digest"],
            blob=p["blob"],
            serializer=p["serializer"],
            type_name=p["type_name"],
            size=int(p["size"]),
            role=p["role"],
            meta=dict(p.get("meta") or {}),
            step_run_id=p.get("step_run_id"),
        )


@dataclass(frozen=True)
class SourceObserved(EventRecord):
    """``source.observed``: a source file or folder a run read, as it was then."""

    path: str = ""
    digest: str = ""
    size: int = 0
    mtime_ns: int = 0
    source_kind: str | None = None
    by_reference: bool = False
    # The source's label (None: public, and in events written before labels existed).
    classification: str | None = None

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> SourceObserved:
        """Parse a ``source.observed`` payload."""
        return cls(
            **cls._base(seq, ts, kind, p),
            path=p["path"],
            digest=p["digest"],
            size=int(p["size"]),
            mtime_ns=int(p["mtime_ns"]),
            source_kind=p.get("kind"),
            by_reference=bool(p.get("by_reference")),
            classification=p.get("classification"),
        )


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

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> ReproductionChecked:
        """Parse a ``reproduction.checked`` payload."""
        return cls(
            **cls._base(seq, ts, kind, p),
            report=p.get("report"),
            original_run_id=p.get("original_run_id"),
            verdict=p.get("verdict"),
            ok=bool(p.get("ok")),
        )


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

    passed: bool | None = None
    failures: tuple[str, ...] = ()
    baseline_run_id: str | None = None
    drift: dict[str, Any] | None = None

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> GateChecked:
        """Parse a ``gate.checked`` payload."""
        passed = p.get("passed")
        return cls(
            **cls._base(seq, ts, kind, p),
            report=p.get("report"),
            passed=None if passed is None else bool(passed),
            failures=tuple(str(f) for f in p.get("failures") or ()),
            baseline_run_id=p.get("baseline_run_id"),
            drift=p.get("drift"),
        )


@dataclass(frozen=True)
class RunNamed(EventRecord):
    """``run.named``: the run's name, given after it started."""

    name: str = ""

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> RunNamed:
        """Parse a ``run.named`` payload."""
        return cls(**cls._base(seq, ts, kind, p), name=p["name"])


@dataclass(frozen=True)
class RunTagged(EventRecord):
    """``run.tagged``: tags set on the run (a key set again is replaced)."""

    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> RunTagged:
        """Parse a ``run.tagged`` payload."""
        return cls(**cls._base(seq, ts, kind, p), tags=dict(p["tags"]))


@dataclass(frozen=True)
class RunUntagged(EventRecord):
    """``run.untagged``: tag keys removed from the run."""

    keys: tuple[str, ...] = ()

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> RunUntagged:
        """Parse a ``run.untagged`` payload."""
        return cls(**cls._base(seq, ts, kind, p), keys=tuple(p["keys"]))


@dataclass(frozen=True)
class RunNoted(EventRecord):
    """``run.noted``: a note added to the run."""

    text: str = ""

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> RunNoted:
        """Parse a ``run.noted`` payload."""
        return cls(**cls._base(seq, ts, kind, p), text=p["text"])


@dataclass(frozen=True)
class RunDeleted(EventRecord):
    """``run.deleted``: the run is marked deleted (its record stays), and why."""

    reason: str = ""

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> RunDeleted:
        """Parse a ``run.deleted`` payload."""
        return cls(**cls._base(seq, ts, kind, p), reason=p["reason"])


@dataclass(frozen=True)
class StoreCollected(EventRecord):
    """``store.collected``: what a garbage collection removed from the store.

    Attributes:
        objects: how many stored objects it removed.
        bytes: their size in bytes.
        removed_list: the digest of the stored list of every removed digest.
        grace_seconds: objects younger than this were spared.
    """

    objects: int = 0
    bytes: int = 0
    removed_list: str = ""
    grace_seconds: float = 0.0

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> StoreCollected:
        """Parse a ``store.collected`` payload."""
        return cls(
            **cls._base(seq, ts, kind, p),
            objects=int(p["objects"]),
            bytes=int(p["bytes"]),
            removed_list=p["removed_list"],
            grace_seconds=float(p.get("grace_seconds", 0.0)),
        )


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

    rule: str = ""
    event: str = ""
    target: str = ""
    destination: str = ""
    attempts: int = 0
    status: int | None = None
    error: str | None = None
    summary: str = ""

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> AlertDelivery:
        """Parse an ``alert.sent`` or ``alert.failed`` payload."""
        status = p.get("status")
        return cls(
            **cls._base(seq, ts, kind, p),
            rule=p["rule"],
            event=p["event"],
            target=p["target"],
            destination=p.get("destination", ""),
            attempts=int(p["attempts"]),
            status=None if status is None else int(status),
            error=p.get("error"),
            summary=p.get("summary", ""),
        )


@dataclass(frozen=True)
class GovernanceAct(EventRecord):
    """A signed governance act: who signed it, with which key.

    The kinds ``user.*``, ``model.registered``, ``promotion.*``, ``alias.moved`` and
    ``decision.recorded`` (docs/adr/0019-governance-on-the-ledger.md). Their rules and
    signatures are checked by :mod:`pipetrail.governance.state`, which folds them from
    their stored text (what the signature covers); the rest stays in :attr:`payload`.
    """

    by: str = ""
    key_id: str = ""
    signature: str = field(default="", repr=False)

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> GovernanceAct:
        """Parse a governance payload."""
        return cls(
            **cls._base(seq, ts, kind, p), by=p["by"], key_id=p["key_id"], signature=p["signature"]
        )


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

    old_keks: list[str] = field(default_factory=list)
    new_kek: str = ""
    data_keys: list[str] = field(default_factory=list)
    provider: str = ""
    reencrypted: bool = False
    objects: int = 0
    retired_data_keys: list[str] = field(default_factory=list)

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> KeysRotated:
        """Parse a ``keys.rotated`` payload."""
        return cls(
            **cls._base(seq, ts, kind, p),
            old_keks=list(p["old_keks"]),
            new_kek=p["new_kek"],
            data_keys=list(p["data_keys"]),
            provider=p.get("provider", ""),
            reencrypted=bool(p.get("reencrypted", False)),
            objects=int(p.get("objects", 0)),
            retired_data_keys=list(p.get("retired_data_keys", [])),
        )


@dataclass(frozen=True)
class KeyringKept(EventRecord):
    """``keys.keyring``: the project keyring as it is from now on (wrapped keys only).

    Attributes:
        keyring: the keyring document (data keys, digest key, a pending data key, each
            wrapped by a key encryption key that is never recorded).
    """

    keyring: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> KeyringKept:
        """Parse a ``keys.keyring`` payload."""
        return cls(**cls._base(seq, ts, kind, p), keyring=dict(p["keyring"]))


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

    user: str = ""
    label: str = ""
    digest: str = ""
    action: str = ""
    purpose: str = ""
    basis: str = ""
    reason: str = ""

    @classmethod
    def from_payload(cls, seq: int, ts: str, kind: str, p: Payload) -> AccessRecorded:
        """Parse an ``access.read`` or ``access.refused`` payload."""
        return cls(
            **cls._base(seq, ts, kind, p),
            user=p["user"],
            label=p["label"],
            digest=p["digest"],
            action=p.get("action", ""),
            purpose=p.get("purpose", ""),
            basis=p.get("basis", ""),
            reason=p.get("reason", ""),
        )


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
