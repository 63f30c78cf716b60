"""Signed in-toto attestations of runs: made (DSSE, the user's key) and checked.

:func:`signed_statement` takes a completed run's in-toto Statement
(:mod:`pipetrail.lineage.exports.intoto`), adds to every subject the SHA-256 of the bytes
``pipetrail get`` writes for it (what SLSA tools compare a file against) next to its
BLAKE3 digest, and wraps it in a DSSE envelope signed with the acting user's Ed25519
key (:mod:`pipetrail.governance.dsse`). :func:`check_attestation` verifies the envelope
against the public keys it is given, that its payload is an in-toto Statement v1, and,
when the project's store holds a subject's bytes, that they still hash to it.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from pipetrail.errors import IntegrityError, NotFoundError
from pipetrail.governance.dsse import INTOTO_PAYLOAD_TYPE, open_envelope, sign_envelope
from pipetrail.lineage.exports import export_run, render_export
from pipetrail.lineage.exports.intoto import STATEMENT_TYPE
from pipetrail.lineage.readout import open_output, resolve_output

if TYPE_CHECKING:
    from collections.abc import Iterable

    from pipetrail.execution.project import Project
    from pipetrail.governance.keys import PublicKey, Signer

__all__ = ["check_attestation", "signed_statement", "subject_sha256"]

_CHUNK = 1 << 20


def _sha256_of(project: Project, digest: str) -> str:
    found = resolve_output(project.reader(), digest)
    hasher = hashlib.sha256()
    with open_output(project.store, found) as stream:
        while chunk := stream.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def subject_sha256(project: Project, statement: dict[str, Any]) -> None:
    """Add ``sha256`` to every subject's digest set, from the stored bytes.

    Raises:
        NotFoundError: a subject's bytes are not in the project's store.
        IntegrityError: they are corrupt.
    """
    for subject in statement["subject"]:
        digests = subject["digest"]
        digests["sha256"] = _sha256_of(project, "blake3:" + digests["blake3"])


def signed_statement(
    project: Project, run_ref: str, signer: Signer, *, namespace: str | None = None
) -> str:
    """The DSSE envelope (JSON text) of RUN's in-toto statement, signed by ``signer``.

    Raises:
        NotFoundError, ExportError: as :func:`~pipetrail.lineage.exports.export_run`.
    """
    statement = export_run(project, run_ref, "intoto", namespace=namespace)
    assert isinstance(statement, dict)  # noqa: S101 - the intoto format is one document
    subject_sha256(project, statement)
    body = render_export(statement, "intoto").encode("utf-8")
    return sign_envelope(body, signer)


def check_attestation(
    text: str,
    keys: Iterable[tuple[str, PublicKey]],
    *,
    where: str,
    project: Project | None = None,
) -> dict[str, Any]:
    """Verify a signed attestation; return what it states and what was checked.

    Returns:
        ``signed_by``, ``run`` (the invocation id), ``subjects`` (each name, digests and
        ``stored``: ``"matches"``, or ``"not here"`` when the store lacks the bytes or
        no project was given).

    Raises:
        IntegrityError: not a DSSE envelope, no signature by a given key, a signature
            that does not verify, a payload that is no in-toto statement, or a subject
            whose stored bytes no longer hash to its digests; naming which.
    """
    envelope = open_envelope(text, keys, where=where)
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
        raise IntegrityError(f"attestation {where}: payload type {envelope.payload_type!r}")
    try:
        statement = json.loads(envelope.payload)
        subjects = statement["subject"]
        valid = statement.get("_type") == STATEMENT_TYPE and isinstance(subjects, list)
    except (ValueError, KeyError, TypeError, AttributeError):
        valid = False
    if not valid:
        raise IntegrityError(f"attestation {where}: the payload is not an in-toto Statement v1")
    checked = []
    for subject in subjects:
        digests = subject.get("digest") or {}
        state = "not here"
        if project is not None and "blake3" in digests and "sha256" in digests:
            try:
                actual = _sha256_of(project, "blake3:" + digests["blake3"])
            except NotFoundError:
                actual = None
            if actual is not None and actual != digests["sha256"]:
                raise IntegrityError(
                    f"attestation {where}: subject {subject.get('name')!r}: the stored bytes "
                    f"hash to sha256 {actual}, the attestation says {digests['sha256']}"
                )
            state = "matches" if actual is not None else state
        checked.append({"name": subject.get("name"), "digest": digests, "stored": state})
    run = statement.get("predicate", {}).get("runDetails", {}).get("metadata", {})
    return {
        "ok": True,
        "signed_by": list(envelope.signed_by),
        "run": run.get("invocationId"),
        "subjects": checked,
    }
