"""Verifying an offline audit bundle: no project, no database, nothing but the file.

A bundle (written by :mod:`pipetrail.verify.bundle`, described in docs/audit.md) is an
uncompressed POSIX tar archive of these members:

* ``manifest.json``: the scope, the checkpoint's size and root, and the SHA-256 and size
  of every other member; ``manifest.dsse.json``: that manifest in a DSSE envelope signed
  by whoever wrote the bundle;
* ``checkpoint.note``: a signed checkpoint of the ledger (C2SP signed note);
* ``keys``: ``NAME ed25519:BASE64`` lines, the public keys of the signers;
* ``events.jsonl``: the events in scope, every stored field, one JSON object a line;
* ``proofs.jsonl``: for each event, its RFC 9162 inclusion path in the checkpoint's tree;
* ``attestations/RUN.intoto.json``: each run's signed in-toto statement (DSSE);
* ``data/<hex>`` (written with ``--with-data``): the content of the scope's artifacts,
  checked by :mod:`pipetrail.governance.bundle_data_check`;
* ``report.md`` and ``report.html``: the same facts for a person.

:func:`verify_bundle` reads the archive's members into memory, but streams the data
members through their hashes (it never extracts anything: no member name can reach the
file system), then checks every element and
reports each one that fails as a :class:`BundleProblem` naming it: a member added,
missing or changed; the manifest's or the checkpoint's signature; an event whose content
does not match its hash, or whose link to the event before it (when both are in the
bundle) is broken; an inclusion proof that does not lead to the checkpoint's root; a
governance event whose signature does not verify with the key its signer held then; an
attestation whose signature does not verify.

Trust: the keys given (``--key``) are the ones trusted to sign the checkpoint and the
manifest; without them the bundle's own ``keys`` member is used, which proves the bundle
is intact and consistent but not who wrote it. Governance signatures are checked with the
keys the ledger itself recorded (``user.added`` and ``user.key_rotated`` events, which the
bundle carries, each proven in the checkpoint's tree).

Imports only the standard library, the hashing module, the Merkle proofs, checkpoints and
DSSE: never the database layer (a test runs it with SQLAlchemy and sqlite3 blocked).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from pipetrail.errors import CheckpointError, GovernanceError, IntegrityError, ParamError
from pipetrail.governance.bundle_data_check import (
    Hashed,
    check_data,
    hash_data,
    kept_members,
    read_members,
)
from pipetrail.governance.checkpoint import open_checkpoint
from pipetrail.governance.dsse import open_envelope
from pipetrail.governance.keys import parse_public_key, signing_message, verify_signature
from pipetrail.ledger.events import event_hash
from pipetrail.ledger.merkle import InclusionChecker, event_leaf

if TYPE_CHECKING:
    from pathlib import Path

    from pipetrail.governance.keys import PublicKey

__all__ = [
    "BUNDLE_FORMAT",
    "MANIFEST",
    "MANIFEST_PAYLOAD_TYPE",
    "BundleProblem",
    "BundleReport",
    "key_from_text",
    "parse_key_lines",
    "verify_bundle",
]

BUNDLE_FORMAT = "pipetrail-audit-bundle/1"
MANIFEST = "manifest.json"
MANIFEST_ENVELOPE = "manifest.dsse.json"
MANIFEST_PAYLOAD_TYPE = "application/vnd.pipetrail.audit-bundle+json"
_MAX_MEMBER = 1 << 30  # 1 GiB: a member beyond it is not one pipetrail wrote
_MAX_MEMBERS = 100_000
_KEY_KINDS = ("user.added", "user.key_rotated")
_FIELDS = ("seq", "ts", "actor", "kind", "run_id", "payload", "prev_hash", "hash")


@dataclass(frozen=True)
class BundleProblem:
    """One element of a bundle that does not verify.

    Attributes:
        element: what failed: ``archive``, ``manifest``, ``checkpoint``, a member's name,
            ``event N``, ``proof of event N``, ``governance event N``.
        message: why, in one sentence.
    """

    element: str
    message: str

    def __str__(self) -> str:
        return f"{self.element}: {self.message}"


@dataclass
class BundleReport:
    """Outcome of :func:`verify_bundle`.

    Attributes:
        problems: every element that failed (empty: the bundle verifies).
        scope: what the bundle covers, as its manifest states it.
        origin: the ledger's checkpoint origin.
        tree_size: the size of the checkpoint's tree.
        events: events checked (hash, link, proof).
        proofs: inclusion proofs verified.
        signatures: governance signatures verified.
        attestations: attestations verified.
        data: data members whose content matches the ledger's digest.
        data_sealed: sealed data members whose content matches the signed manifest.
        left_out: the artifacts whose content the manifest says was left out, and why.
        keys_from: where the trusted keys came from.
    """

    problems: list[BundleProblem] = field(default_factory=list)
    scope: dict[str, Any] = field(default_factory=dict)
    origin: str = ""
    tree_size: int = 0
    events: int = 0
    proofs: int = 0
    signatures: int = 0
    attestations: int = 0
    data: int = 0
    data_sealed: int = 0
    left_out: list[dict[str, Any]] = field(default_factory=list)
    keys_from: str = ""

    @property
    def ok(self) -> bool:
        """Whether every element verified."""
        return not self.problems

    def fail(self, element: str, message: str) -> None:
        """Record that ``element`` failed, and why."""
        self.problems.append(BundleProblem(element, message))

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able data."""
        return {
            "ok": self.ok,
            "scope": self.scope,
            "origin": self.origin,
            "tree_size": self.tree_size,
            "events": self.events,
            "proofs": self.proofs,
            "signatures": self.signatures,
            "attestations": self.attestations,
            "data": self.data,
            "data_sealed": self.data_sealed,
            "left_out": self.left_out,
            "keys_from": self.keys_from,
            "problems": [{"element": p.element, "message": p.message} for p in self.problems],
        }


def parse_key_lines(text: str, *, where: str) -> list[tuple[str, PublicKey]]:
    """Keys from ``NAME ed25519:BASE64`` lines (blank lines and ``#`` comments skipped).

    Raises:
        GovernanceError: a line that is not a name and a key (the message names it).
    """
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, key = line.partition(" ")
        if not name or not key:
            raise GovernanceError(f"{where} line {number}: expected NAME ed25519:BASE64")
        keys.append((name, parse_public_key(key.strip())))
    return keys


def _unverified_manifest(members: dict[str, bytes]) -> dict[str, Any]:
    """The manifest as it reads, before any check (to know which data members to keep)."""
    try:
        value = json.loads(members.get(MANIFEST, b"{}"))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def verify_bundle(path: Path, keys: list[tuple[str, PublicKey]] | None = None) -> BundleReport:
    """Verify an audit bundle offline (see the module docstring).

    Args:
        path: the bundle.
        keys: the (name, public key) pairs trusted to sign the checkpoint and the
            manifest; None: the bundle's own ``keys`` member.

    Raises:
        ParamError: not a tar archive (or no such file).
        IntegrityError: the archive is truncated or damaged.
    """
    if not path.is_file():
        raise ParamError(f"{path}: no such file; give the path of an audit bundle")
    if not tarfile.is_tarfile(path):
        raise ParamError(f"{path} is not a tar archive, so not a pipetrail audit bundle")
    report = BundleReport()
    try:
        with tarfile.open(path, mode="r:") as archive:
            members, data, problems = read_members(archive, _MAX_MEMBER, _MAX_MEMBERS)
            keep = kept_members(_unverified_manifest(members))
            hashed = hash_data(archive, data, keep)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise IntegrityError(f"{path}: the archive is truncated or damaged ({exc})") from None
    report.problems.extend(BundleProblem(*problem) for problem in problems)
    bundled = _bundled_keys(members, report)
    trusted = keys if keys else bundled
    report.keys_from = "--key" if keys else "the bundle's own keys (pin them with --key)"
    manifest = _check_manifest(members, hashed, trusted, report)
    root = _check_checkpoint(members, trusted, manifest, report)
    events = _check_events(members, report)
    _check_proofs(members, events, root, report)
    _check_governance(events, report)
    _check_attestations(members, bundled, report)
    if manifest and (hashed or "data" in manifest):
        check_data(manifest, hashed, events, report)
    return report


def _bundled_keys(members: dict[str, bytes], report: BundleReport) -> list[tuple[str, PublicKey]]:
    data = members.get("keys")
    if data is None:
        report.fail("keys", "the member is missing")
        return []
    try:
        return parse_key_lines(data.decode("utf-8"), where="keys")
    except (GovernanceError, UnicodeDecodeError) as exc:
        report.fail("keys", f"not a list of public keys ({exc})")
        return []


def _check_manifest(
    members: dict[str, bytes],
    hashed: dict[str, Hashed],
    trusted: list[tuple[str, PublicKey]],
    report: BundleReport,
) -> dict[str, Any]:
    raw = members.get(MANIFEST)
    if raw is None:
        report.fail(MANIFEST, "the member is missing: this is not a pipetrail audit bundle")
        return {}
    try:
        manifest = json.loads(raw)
        listed = manifest["members"]
        if manifest.get("format") != BUNDLE_FORMAT or not isinstance(listed, dict):
            raise ValueError(manifest.get("format"))
    except (ValueError, KeyError, TypeError) as exc:
        report.fail(MANIFEST, f"not a {BUNDLE_FORMAT} manifest ({exc})")
        return {}
    report.scope = manifest.get("scope") or {}
    left = manifest.get("left_out")
    report.left_out = [e for e in left if isinstance(e, dict)] if isinstance(left, list) else []
    try:
        envelope = open_envelope(members.get(MANIFEST_ENVELOPE, b""), trusted, where="")
        if envelope.payload != raw or envelope.payload_type != MANIFEST_PAYLOAD_TYPE:
            report.fail("manifest", "its signed copy differs from manifest.json: it was changed")
    except IntegrityError as exc:
        reason = str(exc).removeprefix("attestation : ")
        report.fail("manifest", f"its signature ({MANIFEST_ENVELOPE}) fails: {reason}")
    for name, entry in sorted(listed.items()):
        data = members.get(name)
        if name in hashed:
            actual = hashed[name].sha256
        elif data is None:
            report.fail(name, "listed in the manifest but missing from the archive")
            continue
        else:
            actual = hashlib.sha256(data).hexdigest()
        if not isinstance(entry, dict) or entry.get("sha256") != actual:
            report.fail(name, "its SHA-256 differs from the manifest's: the member was changed")
    for name in sorted({*members, *hashed} - set(listed) - {MANIFEST, MANIFEST_ENVELOPE}):
        report.fail(name, "not listed in the manifest: a member was added")
    return dict(manifest)


def _check_checkpoint(
    members: dict[str, bytes],
    trusted: list[tuple[str, PublicKey]],
    manifest: dict[str, Any],
    report: BundleReport,
) -> bytes | None:
    note = members.get("checkpoint.note")
    if note is None:
        report.fail("checkpoint", "checkpoint.note is missing")
        return None
    try:
        cp = open_checkpoint(note.decode("utf-8"), trusted, where="checkpoint.note")
    except (CheckpointError, UnicodeDecodeError) as exc:
        report.fail("checkpoint", str(exc).removeprefix("checkpoint checkpoint.note: "))
        return None
    report.origin, report.tree_size = cp.origin, cp.size
    stated = manifest.get("checkpoint") or {}
    if manifest and (stated.get("size") != cp.size or stated.get("origin") != cp.origin):
        report.fail("checkpoint", "the manifest states another tree than checkpoint.note")
    return cp.root


def _lines(members: dict[str, bytes], name: str, report: BundleReport) -> list[dict[str, Any]]:
    data = members.get(name)
    if data is None:
        report.fail(name, "the member is missing")
        return []
    out = []
    for number, line in enumerate(data.splitlines(), 1):
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            report.fail(name, f"line {number} is not a JSON object")
            continue
        out.append(value)
    return out


def _check_events(members: dict[str, bytes], report: BundleReport) -> list[dict[str, Any]]:
    events = []
    by_seq: dict[int, str] = {}
    for ev in _lines(members, "events.jsonl", report):
        seq = ev.get("seq")
        if not isinstance(seq, int) or any(k not in ev for k in _FIELDS) or seq in by_seq:
            report.fail("events.jsonl", f"an entry is not an event, or repeats one: {seq!r}")
            continue
        element = f"event {seq} ({ev['kind']})"
        try:
            computed = event_hash(
                seq=seq,
                ts=ev["ts"],
                actor=ev["actor"],
                kind=ev["kind"],
                run_id=ev["run_id"],
                payload_text=ev["payload"],
                prev_hash=ev["prev_hash"],
            )
        except (TypeError, ValueError) as exc:
            report.fail(element, f"its fields cannot be hashed ({exc})")
            continue
        if computed != ev["hash"]:
            report.fail(element, "its content does not match its hash (the event was changed)")
        by_seq[seq] = str(ev["hash"])
        events.append(ev)
    events.sort(key=lambda e: int(e["seq"]))
    for ev in events:
        before = by_seq.get(int(ev["seq"]) - 1)
        if before is not None and ev["prev_hash"] != before:
            report.fail(
                f"event {ev['seq']} ({ev['kind']})",
                f"its prev_hash is not the hash of event {ev['seq'] - 1}: the chain is broken",
            )
    report.events = len(events)
    return events


def _check_proofs(
    members: dict[str, bytes],
    events: list[dict[str, Any]],
    root: bytes | None,
    report: BundleReport,
) -> None:
    proofs: dict[int, list[str]] = {}
    for entry in _lines(members, "proofs.jsonl", report):
        if isinstance(entry.get("seq"), int) and isinstance(entry.get("path"), list):
            proofs[entry["seq"]] = entry["path"]
    if root is None:
        return  # the checkpoint failed: there is no root to prove anything against
    checker = InclusionChecker(report.tree_size, root)
    for ev in events:
        seq = int(ev["seq"])
        element = f"proof of event {seq}"
        path = proofs.get(seq)
        if path is None:
            report.fail(element, "missing from proofs.jsonl")
            continue
        if seq > report.tree_size:
            report.fail(element, f"the checkpoint's tree holds only {report.tree_size} events")
            continue
        try:
            proven = checker.check(event_leaf(str(ev["hash"])), seq - 1, path)
        except (ValueError, TypeError):
            report.fail(element, "not hex hashes")
            continue
        if not proven:
            report.fail(
                element,
                "it does not lead to the checkpoint's root: the event or the proof was "
                "changed, or the event is not in the signed ledger",
            )
            continue
        report.proofs += 1


def _check_governance(events: list[dict[str, Any]], report: BundleReport) -> None:
    """Each governance event's signature, with the key its signer held at that point."""
    held: dict[str, dict[str, PublicKey]] = {}  # user -> key id -> key, as the events go
    for ev in events:
        try:
            payload = json.loads(ev["payload"])
        except (ValueError, TypeError):
            continue  # not JSON: its hash check already failed or it is no governance event
        if not isinstance(payload, dict) or "signature" not in payload:
            continue
        element = f"governance event {ev['seq']} ({ev['kind']})"
        by, key_id = payload.get("by"), payload.get("key_id")
        key = held.get(str(by), {}).get(str(key_id))
        recorded: PublicKey | None = None
        if ev["kind"] in _KEY_KINDS:
            try:
                recorded = parse_public_key(str(payload.get("public_key", "")))
            except GovernanceError:
                report.fail(element, "it records no valid public key")
                continue
            if key is None and payload.get("user") == by and not held:
                key = recorded  # the project's first admin signs their own addition
        if key is None:
            report.fail(
                element,
                f"it is signed by {by!r} with key {key_id}, which the bundle's user events "
                "never gave them",
            )
            continue
        content = {k: v for k, v in payload.items() if k != "signature"}
        message = signing_message(str(ev["kind"]), content)
        if not verify_signature(key, message, str(payload["signature"])):
            report.fail(
                element, f"the signature by {by} does not verify: the event was changed or forged"
            )
            continue
        report.signatures += 1
        if recorded is not None:
            held.setdefault(str(payload.get("user")), {})[recorded.key_id] = recorded


def _check_attestations(
    members: dict[str, bytes], keys: list[tuple[str, PublicKey]], report: BundleReport
) -> None:
    for name in sorted(n for n in members if n.startswith("attestations/")):
        try:
            envelope = open_envelope(members[name], keys, where=name)
            statement = envelope.statement()
            if not isinstance(statement, dict) or "subject" not in statement:
                raise IntegrityError(f"attestation {name}: not an in-toto statement")
        except (IntegrityError, ValueError) as exc:
            report.fail(name, str(exc).removeprefix(f"attestation {name}: "))
            continue
        report.attestations += 1


def key_from_text(text: str) -> tuple[str, PublicKey]:
    """A ``NAME=ed25519:BASE64`` option value, parsed.

    Raises:
        ParamError: it is not a name, ``=`` and a public key.
    """
    name, sep, key = text.partition("=")
    if not sep or not name.strip():
        raise ParamError(f"--key {text!r}: expected NAME=ed25519:BASE64")
    try:
        return name.strip(), parse_public_key(key.strip())
    except GovernanceError as exc:
        raise ParamError(f"--key {text!r}: {exc}") from None
