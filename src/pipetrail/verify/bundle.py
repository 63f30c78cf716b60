"""Writing an offline audit bundle: one tar file an auditor verifies without the database.

:func:`write_bundle` gathers what an auditor needs about a run, or a model (all its
versions, or one), and nothing else:

* the scope's runs: the run (or each version's run) and every run upstream of it in the
  lineage, with all their events (runs, step runs, sources, artifacts, contracts, gates);
* the governance events about them: the model's registrations, promotion requests,
  approvals, rejections, alias moves and decisions, plus every user event (who held which
  key and role), so each signature can be checked with the key its signer held then;
* a checkpoint of the ledger signed now by the acting user, and each event's inclusion
  proof in that checkpoint's tree (RFC 9162);
* the public keys of the signers, each completed run's signed in-toto statement (DSSE),
  with ``exports`` its OpenLineage and PROV exports too, and a Markdown report;
* a manifest with every member's SHA-256, signed (DSSE) by the acting user.

The member layout and its checks are in :mod:`pipetrail.governance.bundle_check`; why a
tar archive is in docs/audit.md. The file appears whole or not at all (written beside,
then renamed).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tarfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from pipetrail.errors import NotFoundError, PipetrailError
from pipetrail.governance.audit_trail import make_checkpoint
from pipetrail.governance.bundle_check import (
    BUNDLE_FORMAT,
    MANIFEST,
    MANIFEST_PAYLOAD_TYPE,
)
from pipetrail.governance.dsse import sign_envelope
from pipetrail.governance.keys import parse_public_key
from pipetrail.governance.state import GOVERNANCE_KINDS
from pipetrail.ledger.bundle_reads import events_of_kinds, events_of_runs
from pipetrail.ledger.merkle_store import read_tree, tree_size
from pipetrail.lineage.exports import export_run, render_export
from pipetrail.lineage.queries import upstream
from pipetrail.verify.attestation import subject_sha256
from pipetrail.verify.bundle_data import DataPlan, plan_data, write_data
from pipetrail.verify.bundle_report import ReportInput, reports

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from pipetrail.execution.project import Project
    from pipetrail.governance.checkpoint import Checkpoint
    from pipetrail.governance.keys import Signer
    from pipetrail.ledger.events import Event

__all__ = ["BundleSummary", "Scope", "parse_scope", "registered_models", "write_bundle"]

_MODEL_KINDS = ("model.registered", "promotion.requested", "alias.moved")
_ACCESS_KINDS = ("access.read", "access.refused")


@dataclass(frozen=True)
class Scope:
    """What a bundle covers: a run, or a model (one version, or all).

    Attributes:
        kind: ``run`` or ``model``.
        name: the run reference, or the model's name.
        version: the model's version, or None for all.
    """

    kind: str
    name: str
    version: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the manifest's ``scope``)."""
        return {"kind": self.kind, "name": self.name, "version": self.version}


@dataclass(frozen=True)
class BundleSummary:
    """What :func:`write_bundle` wrote.

    Attributes:
        path: the bundle file.
        scope: its scope (a run's full id).
        runs: the runs it covers.
        events: how many events.
        governance: how many of them are governance events.
        checkpoint: the checkpoint it proves them in.
        note: that checkpoint's signed note.
        not_attested: runs without an attestation, and why.
        data: how many stored objects' content it holds (None: written without data).
        left_out: the artifacts whose content was left out, and why.
    """

    path: Path
    scope: Scope
    runs: tuple[str, ...]
    events: int
    governance: int
    checkpoint: Checkpoint
    note: str
    not_attested: dict[str, str]
    data: int | None = None
    left_out: tuple[dict[str, str], ...] = ()


def parse_scope(ref: str, models: set[str]) -> Scope:
    """``MODEL``, ``MODEL@VERSION`` or ``MODEL:VERSION`` (a registered model), or a run.

    Raises:
        NotFoundError: ``MODEL@VERSION`` names no registered model, or a bad version.
    """
    name, sep, version = ref.partition("@" if "@" in ref else ":")
    if sep:
        if name not in models:
            raise NotFoundError(
                f"there is no model {name!r}; list them with `pipetrail model list`"
            )
        if not version.isdigit() or int(version) < 1:
            raise NotFoundError(f"{ref!r}: a model version is a number from 1 (MODEL@2)")
        return Scope("model", name, int(version))
    return Scope("model", name) if ref in models else Scope("run", ref)


def registered_models(project: Project) -> set[str]:
    """The names of the models registered in the project (read, not verified: cheap)."""
    db = project.ledger.db
    with db.snapshot():
        size = tree_size(db)[0]
        return {
            str(_content(ev).get("model")) for ev in events_of_kinds(db, ["model.registered"], size)
        }


def _content(event: Event) -> dict[str, Any]:
    try:
        value = json.loads(event.payload_text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _governance(rows: list[Event], scope: Scope, runs: set[str]) -> tuple[list[Event], set[str]]:
    """The governance events in scope, and the runs of the model versions it covers."""
    parsed = [(row, _content(row)) for row in rows]
    versions: set[tuple[str, int]] = set()
    version_runs: set[str] = set()
    for row, p in parsed:
        if row.kind != "model.registered":
            continue
        model, version = str(p.get("model")), p.get("version")
        if scope.kind == "model":
            wanted = model == scope.name and scope.version in (None, version)
        else:
            wanted = p.get("run_id") in runs
        if wanted and isinstance(version, int):
            versions.add((model, version))
            if isinstance(p.get("run_id"), str):
                version_runs.add(p["run_id"])
    models = {model for model, _ in versions}
    requests = {
        str(p.get("request_id"))
        for row, p in parsed
        if row.kind == "promotion.requested" and (p.get("model"), p.get("version")) in versions
    }
    picked = []
    for row, p in parsed:
        kind = row.kind
        if kind.startswith("user."):
            keep = True
        elif kind in _MODEL_KINDS:
            keep = (p.get("model"), p.get("version")) in versions or (
                kind == "alias.moved" and p.get("request_id") in requests
            )
        elif kind in ("promotion.approved", "promotion.rejected"):
            keep = p.get("request_id") in requests
        elif kind == "decision.recorded":
            about = p.get("about")
            about = about if isinstance(about, dict) else {}
            keep = about.get("model") in models or about.get("run_id") in runs | version_runs
        else:
            keep = False
        if keep:
            picked.append(row)
    return picked, version_runs


def _closure(project: Project, run_ids: set[str]) -> set[str]:
    """The runs and every run upstream of them in the lineage."""
    reader = project.reader()
    found = set(run_ids)
    for run_id in sorted(run_ids):
        found.update(info.run_id for info in upstream(reader, run_id).runs)
    return found


def _keys_text(events: list[Event], signer: Signer) -> str:
    """``NAME ed25519:KEY`` lines: every key a user was given, and the bundle's signer."""
    lines = {(signer.name, signer.public_key.text)}
    for row in events:
        if row.kind in ("user.added", "user.key_rotated"):
            p = _content(row)
            with contextlib.suppress(PipetrailError):
                lines.add((str(p.get("user")), parse_public_key(str(p.get("public_key"))).text))
    return "".join(f"{name} {key}\n" for name, key in sorted(lines))


def _jsonl(items: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(item, option=orjson.OPT_SORT_KEYS) + b"\n" for item in items)


def _attest(
    project: Project, runs: list[str], statuses: dict[str, str], signer: Signer, exports: bool
) -> tuple[dict[str, bytes], dict[str, str]]:
    members: dict[str, bytes] = {}
    skipped: dict[str, str] = {}
    for run_id in runs:
        if statuses.get(run_id) != "completed":
            skipped[run_id] = f"the run is {statuses.get(run_id, 'unknown')}, not completed"
            continue
        try:
            envelope = _signed_statement(project, run_id, signer)
            documents = {
                fmt: render_export(export_run(project, run_id, fmt), fmt)
                for fmt in (("openlineage", "prov") if exports else ())
            }
        except PipetrailError as exc:
            skipped[run_id] = str(exc)
            continue
        members[f"attestations/{run_id}.intoto.json"] = envelope.encode("utf-8")
        for fmt, text in documents.items():
            members[f"exports/{run_id}.{fmt}.json"] = text.encode("utf-8")
    return members, skipped


def _signed_statement(project: Project, run_id: str, signer: Signer) -> str:
    """The run's in-toto statement in a signed DSSE envelope.

    As ``pipetrail export --format intoto --sign`` signs it, but encoded compactly with
    orjson (a run that read 10,000 files has as many dependencies; the payload is for
    machines, and every JSON reader parses it the same).
    """
    statement = export_run(project, run_id, "intoto")
    assert isinstance(statement, dict)  # noqa: S101 - the intoto format is one document
    subject_sha256(project, statement)
    try:
        body = orjson.dumps(statement, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer beyond 64 bits in the params: the standard encoder
        body = json.dumps(statement, sort_keys=True).encode("utf-8")
    return sign_envelope(body, signer)


def _statuses(events: list[Event]) -> dict[str, str]:
    ends = {
        "run.completed": "completed",
        "run.failed": "failed",
        "run.crashed": "crashed",
        "run.interrupted": "interrupted",
    }
    statuses: dict[str, str] = {}
    for row in events:
        if row.run_id and row.kind == "run.started":
            statuses.setdefault(row.run_id, "running")
        elif row.run_id and row.kind in ends:
            statuses[row.run_id] = ends[row.kind]
    return statuses


def _runs_in_scope(project: Project, scope: Scope) -> list[str]:
    """The runs of the scope and every run upstream of them (read at the current size).

    Raises:
        NotFoundError: the scope is a model nobody registered.
    """
    db = project.ledger.db
    with db.snapshot():
        acts = events_of_kinds(db, GOVERNANCE_KINDS, tree_size(db)[0])
    governance, version_runs = _governance(
        acts, scope, {scope.name} if scope.kind == "run" else set()
    )
    if scope.kind == "model" and not version_runs and not governance:
        raise NotFoundError(f"there is no model {scope.name!r}")
    roots = {scope.name} if scope.kind == "run" else version_runs
    return sorted(_closure(project, roots)) if roots else []


def _access_events(db: Any, events: list[Event], size: int) -> list[Event]:
    """The reads (and refused reads) of the scope's artifacts, up to ``size``."""
    digests = {_content(ev).get("digest") for ev in events if ev.kind == "artifact.recorded"}
    return [
        ev
        for ev in events_of_kinds(db, _ACCESS_KINDS, size)
        if _content(ev).get("digest") in digests
    ]


def write_bundle(
    project: Project,
    scope: Scope,
    out: Path,
    signer: Signer,
    *,
    exports: bool = False,
    data: bool = False,
    skip_refused: bool = False,
) -> BundleSummary:
    """Write the audit bundle of ``scope`` to ``out`` (see the module docstring).

    Args:
        project: the project.
        scope: the run or model.
        out: the file to write.
        signer: who signs the checkpoint, the attestations and the manifest.
        exports: add each run's OpenLineage and PROV exports (large for runs that read
            thousands of files).
        data: add the content of the scope's artifacts (:mod:`pipetrail.verify.bundle_data`).
        skip_refused: with ``data``, leave out (and list) the sensitive artifacts the
            acting user may not read, instead of refusing.

    Raises:
        NotFoundError: the run or model is unknown, or the ledger is empty.
        PermissionDeniedError: ``data`` and a sensitive artifact the user may not read.
        PipetrailError: the ledger or the store cannot be read.
    """
    db = project.ledger.db
    if scope.kind == "run":
        scope = Scope("run", project.reader().resolve_run(scope.name))
    runs = _runs_in_scope(project, scope)
    plan = None
    if data:  # the gate records each read before the checkpoint: the bundle carries them
        with db.snapshot():
            scoped = events_of_runs(db, runs, tree_size(db)[0])
        plan = plan_data(project, scoped, skip_refused=skip_refused)
    checkpoint, note = make_checkpoint(db, signer)
    size = checkpoint.size
    with db.snapshot():
        acts = events_of_kinds(db, GOVERNANCE_KINDS, size)
        governance, _ = _governance(acts, scope, set(runs) if scope.kind == "run" else set())
        by_seq = {ev.seq: ev for ev in events_of_runs(db, runs, size)}
        reads = _access_events(db, list(by_seq.values()), size)
        by_seq.update((ev.seq, ev) for ev in [*governance, *reads])
        events = [by_seq[seq] for seq in sorted(by_seq)]
        paths = read_tree(db).inclusion_proofs([seq - 1 for seq in by_seq], size)
    hexes: dict[bytes, str] = {}
    proofs = [
        {"seq": seq, "path": [hexes.get(n) or hexes.setdefault(n, n.hex()) for n in paths[seq - 1]]}
        for seq in sorted(by_seq)
    ]
    statuses = _statuses(events)
    members, skipped = _attest(project, runs, statuses, signer, exports)
    members.update(
        {
            "checkpoint.note": note.encode("utf-8"),
            "keys": _keys_text(events, signer).encode("utf-8"),
            "events.jsonl": _jsonl([ev.fields() for ev in events]),
            "proofs.jsonl": _jsonl(proofs),
        }
    )
    manifest: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "scope": scope.to_dict(),
        "created_by": signer.name,
        "checkpoint": {"origin": checkpoint.origin, "size": size, "time": checkpoint.time},
        "runs": runs,
        "counts": {"events": len(events), "governance": len(governance), "runs": len(runs)},
        "not_attested": skipped,
    }
    if plan is not None:
        manifest["left_out"] = plan.left_out

    def finish(data_members: dict[str, dict[str, Any]]) -> dict[str, bytes]:
        """The report, the manifest and its signature, once the data is written."""
        given = ReportInput(
            scope.to_dict(), checkpoint, events, statuses, skipped,
            {name: entry["data"] for name, entry in data_members.items()} if data else None,
            plan.left_out if plan is not None else [],
        )  # fmt: skip
        markdown, page = reports(given)
        members["report.md"] = markdown.encode("utf-8")
        members["report.html"] = page.encode("utf-8")
        listed = {
            name: {"sha256": hashlib.sha256(blob).hexdigest(), "size": len(blob)}
            for name, blob in members.items()
        }
        listed.update(
            (name, {"sha256": e["sha256"], "size": e["size"]}) for name, e in data_members.items()
        )
        manifest["members"] = dict(sorted(listed.items()))
        if data:
            manifest["data"] = {name: entry["data"] for name, entry in sorted(data_members.items())}
        raw = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
        envelope = sign_envelope(raw, signer, MANIFEST_PAYLOAD_TYPE).encode()
        return {**dict(sorted(members.items())), MANIFEST: raw, "manifest.dsse.json": envelope}

    _write_tar(out, plan, finish)
    return BundleSummary(
        out, scope, tuple(runs), len(events), len(governance), checkpoint, note, skipped,
        len(plan.items) if plan is not None else None,
        tuple(plan.left_out) if plan is not None else (),
    )  # fmt: skip


def _write_tar(
    out: Path,
    plan: DataPlan | None,
    finish: Callable[[dict[str, dict[str, Any]]], dict[str, bytes]],
) -> None:
    """Write the archive beside ``out`` and rename it into place (whole or nothing).

    The content (``plan``) is streamed in first, hashed on the way; ``finish`` then
    gives the other members (the manifest last), knowing every data member's digests.
    """
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    now = int(time.time())
    try:
        with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as archive:
            written = write_data(archive, plan, now) if plan is not None else {}
            for name, blob in finish(written).items():
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(blob), now, 0o644
                archive.addfile(info, io.BytesIO(blob))
        os.replace(tmp, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
