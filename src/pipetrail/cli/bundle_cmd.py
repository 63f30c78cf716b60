"""``pipetrail audit bundle`` and ``pipetrail audit verify-bundle``.

``bundle`` writes one tar file holding what an auditor needs about a run or a model;
``verify-bundle`` checks such a file offline: it opens no project and no database
(docs/audit.md, "An auditor's walk-through"). Imports only click at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipetrail.cli.exits import (
    EXIT_BAD_INPUT,
    EXIT_INTEGRITY,
    EXIT_STORE,
    disk_full_message,
    emit_json,
    fail,
    reporting_errors,
)

if TYPE_CHECKING:
    from pipetrail.governance.bundle_check import BundleReport

__all__ = ["bundle", "verify_bundle"]


@click.command("bundle")
@click.argument("ref", metavar="RUN|MODEL[@VERSION]")
@click.option(
    "-o", "--output", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
    help="The bundle file to write (a tar archive).",
)  # fmt: skip
@click.option(
    "--with-exports", "exports", is_flag=True,
    help="Add each run's OpenLineage and PROV exports.",
)  # fmt: skip
@click.option(
    "--with-data", "data", is_flag=True,
    help="Add the content of the artifacts; sensitive content only with the admin role "
    "or a grant for its label (each read recorded).",
)  # fmt: skip
@click.option(
    "--skip-refused", is_flag=True,
    help="With --with-data: leave out (and list) the sensitive artifacts you may not "
    "read, instead of refusing.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def bundle(
    ref: str, out: Path, exports: bool, data: bool, skip_refused: bool, as_json: bool
) -> None:
    """Write an offline audit bundle of a run, or of a model (one version or all)."""
    from pipetrail.cli.audit_cmd import configured_witness
    from pipetrail.execution.project import Project
    from pipetrail.governance.audit_trail import acting_user
    from pipetrail.governance.keys import load_signer
    from pipetrail.verify.bundle import parse_scope, registered_models, write_bundle

    if skip_refused and not data:
        fail(
            "--skip-refused applies to --with-data: add --with-data, or leave it out",
            EXIT_BAD_INPUT,
        )
    with reporting_errors():
        project = Project.discover(must_exist=True)
        try:
            signer = load_signer(acting_user())
            scope = parse_scope(ref, registered_models(project))
            try:
                made = write_bundle(
                    project, scope, out, signer, exports=exports, data=data,
                    skip_refused=skip_refused,
                )  # fmt: skip
            except OSError as exc:
                full = disk_full_message(exc)
                if full is not None:
                    fail(full, EXIT_STORE)
                fail(f"cannot write the bundle {out}: {exc.strerror or exc}", EXIT_BAD_INPUT)
            witness = configured_witness(project)
            kept = None
            if witness is not None:  # the bundle's checkpoint is kept outside as well
                kept = witness.write(made.checkpoint, made.note, signer=signer.name)
        finally:
            project.close()
    summary = {
        "path": str(made.path),
        "scope": made.scope.to_dict(),
        "runs": list(made.runs),
        "events": made.events,
        "governance": made.governance,
        "checkpoint_size": made.checkpoint.size,
        "checkpoint_kept": kept,
        "not_attested": made.not_attested,
        "data": made.data,
        "left_out": list(made.left_out),
    }
    if as_json:
        emit_json(summary)
        return
    click.echo(
        f"audit bundle of {ref}: {made.events} events ({made.governance} governance) of "
        f"{len(made.runs)} runs, proven in a checkpoint of {made.checkpoint.size} events "
        f"signed by {signer.name}: {made.path}"
    )
    if made.data is not None:
        click.echo(f"with the content of {made.data} stored objects")
    for run, why in sorted(made.not_attested.items()):
        click.echo(f"note: run {run} has no attestation: {why}", err=True)
    for entry in made.left_out:
        click.echo(
            f"note: left out the content of artifact {entry['artifact']} "
            f"({entry['label']}): {entry['reason']}",
            err=True,
        )


def _print(report: BundleReport, path: Path) -> None:
    if report.ok:
        scope = report.scope
        click.echo(
            f"bundle verified: {path} ({scope.get('kind')} {scope.get('name')}): "
            f"{report.events} events re-hashed and proven in the checkpoint of "
            f"{report.tree_size} events of {report.origin}; {report.signatures} governance "
            f"signatures and {report.attestations} attestations verify; keys: "
            f"{report.keys_from}"
        )
        if report.data or report.data_sealed:
            click.echo(
                f"data: {report.data} members match the digests the ledger records; "
                f"{report.data_sealed} sealed (sensitive) members match the digests the "
                "signed manifest states"
            )
        for entry in report.left_out:
            click.echo(
                f"note: the bundle leaves out the content of artifact {entry.get('artifact')} "
                f"({entry.get('label')}): {entry.get('reason')}"
            )
        return
    for problem in report.problems:
        click.echo(f"FAILED {problem}", err=True)
    count = len(report.problems)
    click.echo(
        f"the bundle {path} does not verify: {count} problem{'s' if count > 1 else ''}", err=True
    )


@click.command("verify-bundle")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--key", "keys", multiple=True, metavar="NAME=ed25519:BASE64",
    help="A key trusted to sign the checkpoint and the manifest (repeat); default: the "
    "bundle's own keys.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def verify_bundle(path: Path, keys: tuple[str, ...], as_json: bool) -> None:
    """Verify an audit bundle offline: every digest, proof and signature."""
    from pipetrail.governance.bundle_check import key_from_text
    from pipetrail.governance.bundle_check import verify_bundle as check

    with reporting_errors():
        trusted = [key_from_text(text) for text in keys]
        report = check(path, trusted or None)
    if as_json:
        emit_json(report.to_dict())
    else:
        _print(report, path)
    if not report.ok:
        raise SystemExit(EXIT_INTEGRITY)
