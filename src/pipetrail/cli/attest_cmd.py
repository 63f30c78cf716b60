"""``pipetrail attest verify FILE``: check a signed in-toto attestation.

The attestation is what ``pipetrail export RUN --format intoto --sign`` writes: a DSSE
envelope signed with a user's Ed25519 key. The verifier names the keys it trusts
(``--key NAME=ed25519:BASE64``, or ``--keys FILE`` with one ``NAME ed25519:BASE64`` per
line), obtained out of band (docs/audit.md). Inside a project, each subject's stored
bytes are hashed again and must match.
"""

from __future__ import annotations

from pathlib import Path

import click

from pipetrail.cli.exits import emit_json

__all__ = ["attest"]


@click.group("attest")
def attest() -> None:
    """Verify signed attestations (in-toto statements in DSSE envelopes)."""


@attest.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "keys", multiple=True, metavar="NAME=PUBLICKEY", help="A trusted key.")
@click.option(
    "--keys",
    "keys_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file of trusted keys, one 'NAME ed25519:BASE64' per line.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def verify(file: Path, keys: tuple[str, ...], keys_file: Path | None, as_json: bool) -> None:
    """Check FILE's signature, statement and (in a project) its subjects' bytes (exit 3)."""
    from pipetrail.errors import ParamError
    from pipetrail.execution.project import Project
    from pipetrail.governance.keys import check_name, parse_public_key
    from pipetrail.governance.witness import parse_keys
    from pipetrail.verify.attestation import check_attestation

    trusted = []
    for text in keys:
        name, sep, key = text.partition("=")
        if not sep:
            raise ParamError(f"--key {text!r}: expected NAME=ed25519:BASE64")
        trusted.append((check_name(name.strip()), parse_public_key(key)))
    if keys_file is not None:
        try:
            listed = keys_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ParamError(f"cannot read the keys file {keys_file}: {exc}") from None
        trusted.extend(parse_keys(listed, where=str(keys_file)))
    if not trusted:
        raise ParamError("name the keys you trust: --key NAME=ed25519:BASE64 or --keys FILE")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParamError(f"cannot read {file}: {exc}") from None
    project = None
    from pipetrail.config import find_root

    if find_root() is not None:
        project = Project.discover(must_exist=True)
    try:
        report = check_attestation(text, trusted, where=str(file), project=project)
    finally:
        if project is not None:
            project.close()
    if as_json:
        emit_json(report)
        return
    here = sum(1 for s in report["subjects"] if s["stored"] == "matches")
    click.echo(
        f"attestation {file}: signed by {', '.join(report['signed_by'])}; run {report['run']}, "
        f"{len(report['subjects'])} subjects ({here} re-hashed from this project's store)"
    )
