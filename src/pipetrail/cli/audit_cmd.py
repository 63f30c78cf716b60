"""``pipetrail audit checkpoint`` and ``audit prove``; checkpoints in ``audit verify``.

Checkpoints are signed statements of the ledger's size and Merkle root, kept outside the
ledger (docs/audit.md). Where: ``--to DIR`` (a folder), ``--git REPO`` (a commit in a
repository of its own), or the project's ``pipetrail.toml``::

    [audit]
    checkpoints = "../witness"          # a folder, or the top of a git repository
    checkpoint_after_run = true         # sign one after every completed run
    checkpoint_after_governance = true  # and after every governance command that records

Imports only click and the standard library at start-up.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipetrail.cli.exits import EXIT_BAD_INPUT, emit_json, fail

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pipetrail.execution.project import Project
    from pipetrail.governance.keys import PublicKey
    from pipetrail.governance.witness import FoundNote, Witness

__all__ = [
    "after_run_checkpoint",
    "checkpoint",
    "checkpoint_after_governance",
    "configured_witness",
    "load_checkpoints",
    "print_checkpoints",
    "prove",
    "signed_intoto",
    "verify_against_checkpoints",
]


def _settings(project: Project) -> dict[str, Any]:
    """The ``[audit]`` table of the project's ``pipetrail.toml`` (empty when absent)."""
    from pipetrail.config_tables import project_table
    from pipetrail.errors import ProjectError

    try:
        table = project_table(project.root, "audit")
    except ProjectError:
        return {}  # the project's own configuration loading reports a broken file
    return table if isinstance(table, dict) else {}


def _witness(project: Project) -> tuple[Witness | None, str]:
    """The witness ``[audit] checkpoints`` names (or None), and what is wrong with it."""
    from pipetrail.governance.witness import Witness

    where = _settings(project).get("checkpoints")
    if where is None:
        return None, ""
    if not isinstance(where, str) or not where:
        return None, (
            f"{project.root / 'pipetrail.toml'}: [audit] checkpoints must be a folder or "
            "repository path (text)"
        )
    path = Path(where)
    return Witness(path if path.is_absolute() else project.root / path), ""


def configured_witness(project: Project) -> Witness | None:
    """The witness ``[audit] checkpoints`` names, or None when it names none.

    Exits with :data:`EXIT_BAD_INPUT` when the setting is not a path.
    """
    witness, wrong = _witness(project)
    if wrong:
        fail(wrong, EXIT_BAD_INPUT)
    return witness


def _sign(project: Project, witness: Witness) -> dict[str, Any]:
    from pipetrail.governance.audit_trail import acting_user, make_checkpoint
    from pipetrail.governance.keys import load_signer

    user = acting_user()
    signer = load_signer(user)
    cp, note = make_checkpoint(project.ledger.db, signer)
    where = witness.write(cp, note, signer=user)
    warning = witness.add_key(user, signer.public_key)
    return {
        "origin": cp.origin,
        "size": cp.size,
        "root": note.splitlines()[2],
        "time": cp.time,
        "signer": user,
        "key": signer.public_key.text,
        "written": where,
        "warning": warning,
    }


@click.command("checkpoint")
@click.option("--to", "folder", type=click.Path(file_okay=False, path_type=Path), help="A folder.")
@click.option(
    "--git",
    "repo",
    type=click.Path(file_okay=False, path_type=Path),
    help="A git repository of its own (made if the folder is new or empty).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def checkpoint(folder: Path | None, repo: Path | None, as_json: bool) -> None:
    """Sign the ledger's size and Merkle root; keep it outside the ledger."""
    from pipetrail.execution.project import Project
    from pipetrail.governance.witness import Witness

    if folder is not None and repo is not None:
        fail("give --to DIR or --git REPO, not both", EXIT_BAD_INPUT)
    project = Project.discover(must_exist=True)
    try:
        if folder is not None or repo is not None:
            witness = Witness(folder or repo or Path(), git=repo is not None)
        else:
            configured = configured_witness(project)
            if configured is None:
                fail(
                    "where should the checkpoint go? Give --to DIR or --git REPO, or set "
                    '[audit] checkpoints = "PATH" in pipetrail.toml',
                    EXIT_BAD_INPUT,
                )
            witness = configured
        made = _sign(project, witness)
    finally:
        project.close()
    if as_json:
        emit_json(made)
        return
    click.echo(
        f"checkpoint of {made['size']} events (root {made['root']}) signed by "
        f"{made['signer']}: {made['written']}"
    )
    if made["warning"]:
        click.echo(f"warning: {made['warning']}", err=True)


def _asked(project: Project, flag: str) -> bool:
    """Whether ``[audit] FLAG = true``; a value that is not true or false is warned about."""
    value = _settings(project).get(flag, False)
    if not isinstance(value, bool):
        click.echo(
            f"warning: {project.root / 'pipetrail.toml'}: [audit] {flag} must be true or "
            f"false, not {value!r}; no checkpoint is signed until it is fixed",
            err=True,
        )
        return False
    return value


def _sign_after(project: Project, flag: str, what: str) -> None:
    """Sign a checkpoint into the configured witness; warn, never fail, when it cannot."""
    from pipetrail.errors import PipetrailError

    witness, wrong = _witness(project)
    if witness is None:
        reason = (
            wrong or f"[audit] {flag} is set but [audit] checkpoints names no folder or repository"
        )
        click.echo(f"warning: {reason}; no checkpoint was signed", err=True)
        return
    try:
        made = _sign(project, witness)
    except (PipetrailError, OSError) as exc:
        click.echo(f"warning: no checkpoint was signed after the {what}: {exc}", err=True)
        return
    click.echo(f"checkpoint of {made['size']} events: {made['written']}", err=True)


def after_run_checkpoint(project: Project) -> None:
    """Sign a checkpoint after a run when ``[audit] checkpoint_after_run`` is true.

    A checkpoint that cannot be written does not fail the run: a warning says why.
    """
    if _asked(project, "checkpoint_after_run"):
        _sign_after(project, "checkpoint_after_run", "run")


@contextlib.contextmanager
def checkpoint_after_governance(project: Project) -> Iterator[None]:
    """Sign a checkpoint after the body when it recorded governance events.

    Only when ``[audit] checkpoint_after_governance`` is true; a body that records
    nothing (a refusal, a listing) signs nothing, and one that cannot be signed warns.
    """
    if not _asked(project, "checkpoint_after_governance"):
        yield
        return
    from pipetrail.ledger.merkle_store import tree_size

    before = tree_size(project.ledger.db)[0]
    yield
    if tree_size(project.ledger.db)[0] != before:
        _sign_after(project, "checkpoint_after_governance", "governance event")


def load_checkpoints(
    location: Path, key_texts: tuple[str, ...]
) -> tuple[list[FoundNote], list[tuple[str, PublicKey]], str]:
    """The notes kept at ``location`` and the keys trusted to sign them.

    Raises:
        ParamError: nothing found, no trusted key, a bad ``--key``; says what to do.
    """
    from pipetrail.errors import GovernanceError, ParamError

    try:
        return _load_checkpoints(location, key_texts)
    except GovernanceError as exc:  # what was given cannot be used: bad input, exit 2
        raise ParamError(str(exc)) from None


def _load_checkpoints(
    location: Path, key_texts: tuple[str, ...]
) -> tuple[list[FoundNote], list[tuple[str, PublicKey]], str]:
    from pipetrail.errors import GovernanceError
    from pipetrail.governance.keys import check_name, parse_public_key
    from pipetrail.governance.witness import KEYS_FILE, SUFFIX, Witness

    witness = Witness(location)
    keys = []
    for text in key_texts:
        name, sep, key = text.partition("=")
        if not sep:
            raise GovernanceError(f"--key {text!r}: expected NAME=ed25519:BASE64")
        keys.append((check_name(name.strip()), parse_public_key(key)))
    source = "--key"
    if not keys:
        keys = witness.keys()
        source = str(location / KEYS_FILE)
    if not keys:
        raise GovernanceError(
            f"no key is trusted to sign the checkpoints: give --key NAME=ed25519:BASE64, or "
            f"list them in {location / KEYS_FILE} (NAME ed25519:BASE64 per line)"
        )
    notes = witness.notes()
    if not notes:
        raise GovernanceError(f"no checkpoint (*{SUFFIX}) in {witness}")
    return notes, keys, source


def verify_against_checkpoints(
    project: Project,
    loaded: tuple[list[FoundNote], list[tuple[str, PublicKey]], str],
    ledger_report: dict[str, Any],
) -> dict[str, Any]:
    """Check the checkpoints once ``audit verify`` has checked the ledger itself."""
    from pipetrail.governance.audit_trail import verify_checkpoints

    notes, keys, source = loaded
    if ledger_report["first_bad_seq"] is not None:
        skipped = "the ledger's hash chain is broken; restore it before checking checkpoints"
    elif any(
        p["table"] == "merkle_nodes" and p["problem"] != "extra" for p in ledger_report["derived"]
    ):  # nodes beyond the events (a deleted tail's) are never read by a proof
        skipped = (
            "the stored Merkle tree disagrees with the events; rebuild it with `pipetrail "
            "audit rebuild`, then verify the checkpoints again"
        )
    else:
        report = verify_checkpoints(project.ledger.db, notes, keys).to_dict()
        report["keys_from"] = source
        return report
    return {"ok": False, "checked": 0, "skipped": skipped, "keys_from": source}


def print_checkpoints(report: dict[str, Any], location: Path) -> None:
    """Render the checkpoints part of ``audit verify``."""
    if "skipped" in report:
        click.echo(f"checkpoints not checked: {report['skipped']}", err=True)
        return
    if report["ok"]:
        newest = report["checkpoints"][-1]
        click.echo(
            f"checkpoints: the ledger ({report['size']} events) is consistent with all "
            f"{report['checked']} checkpoints in {location} (newest: {newest['size']} "
            f"events at {newest['time']}; keys from {report['keys_from']})"
        )
        return
    first = report["first_failure"]
    click.echo(f"checkpoint FAILED: {first['where']}: {first['reason']}", err=True)
    failed = [c for c in report["checkpoints"] if not c["ok"]]
    for other in failed[1:]:
        click.echo(f"  also fails: {other['where']}: {other['reason']}", err=True)
    click.echo(
        f"{len(failed)} of {report['checked']} checkpoints fail against the ledger "
        f"({report['size']} events)",
        err=True,
    )


@click.command("prove")
@click.argument("seq", metavar="EVENT_SEQ", type=int)
@click.option("--size", type=int, help="The tree size (a checkpoint's); default: all events.")
def prove(seq: int, size: int | None) -> None:
    """Print the proof (JSON) that an event is in the ledger's Merkle tree."""
    from pipetrail.execution.project import Project
    from pipetrail.governance.audit_trail import inclusion_proof

    project = Project.discover(must_exist=True)
    try:
        proof = inclusion_proof(project.ledger.db, seq, size)
    finally:
        project.close()
    click.echo(json.dumps(proof, indent=2, sort_keys=True))


def signed_intoto(project: Project, run_ref: str, namespace: str | None) -> str:
    """RUN's in-toto statement in a DSSE envelope signed by the acting user."""
    from pipetrail.governance.audit_trail import acting_user
    from pipetrail.governance.keys import load_signer
    from pipetrail.verify.attestation import signed_statement

    return signed_statement(project, run_ref, load_signer(acting_user()), namespace=namespace)
