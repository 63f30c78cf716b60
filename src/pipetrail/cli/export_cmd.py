"""``pipetrail export RUN --format openlineage|prov|intoto [-o FILE] [--send URL]``.

Thin: parse, call :mod:`pipetrail.lineage.exports`, write the text. Errors are
pipetrail errors, rendered with their exit code by the ``pipetrail`` group. An export
that fails writes nothing: with ``-o`` the file appears, whole, only on success, with the
permissions the umask gives new files (see :mod:`pipetrail.cli.files`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipetrail.cli.files import write_text

if TYPE_CHECKING:
    from pipetrail.lineage.exports import GovernanceRecord

__all__ = ["export"]

_FORMATS = ("openlineage", "prov", "intoto")


@click.command("export")
@click.argument("run_ref", metavar="RUN")
@click.option(
    "--format",
    "format_name",
    type=click.Choice(_FORMATS),
    required=True,
    help="openlineage: RunEvents as JSON Lines; prov: W3C PROV-JSON; intoto: SLSA statement.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
@click.option(
    "--namespace",
    metavar="URI",
    help="Project namespace for jobs and datasets (default: pipetrail://<project folder>).",
)
@click.option(
    "--send",
    "send_url",
    metavar="URL",
    help="POST the OpenLineage events to a collector (Marquez: http://host:5000).",
)
@click.option(
    "--api-key",
    envvar="OPENLINEAGE_API_KEY",
    help="Bearer token for --send (default: $OPENLINEAGE_API_KEY).",
)
@click.option(
    "--timeout",
    default=10.0,
    show_default=True,
    help="Seconds each event may take in all, connecting and retries included (--send).",
)
@click.option(
    "--sign",
    is_flag=True,
    help="intoto: write a DSSE envelope signed with your key (PIPETRAIL_USER).",
)
@click.option(
    "--retries",
    type=click.IntRange(0, 100),
    default=3,
    show_default=True,
    help="Tries again after no connection, a broken answer or HTTP 500/502/503/504 (--send).",
)
@click.option(
    "--retry-backoff",
    type=click.FloatRange(0, None),
    default=0.3,
    show_default=True,
    metavar="SECONDS",
    help="Backoff factor between retries: 0, then 2x, 4x... this (--send).",
)
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="An extra HTTP header for --send (repeatable).",
)
@click.option("--gzip", is_flag=True, help="Compress the events sent (--send).")
def export(
    run_ref: str,
    format_name: str,
    output: Path | None,
    namespace: str | None,
    send_url: str | None,
    api_key: str | None,
    timeout: float,
    sign: bool,
    retries: int,
    retry_backoff: float,
    headers: tuple[str, ...],
    gzip: bool,
) -> None:
    """Export RUN (id, prefix or 'latest') as OpenLineage, W3C PROV or in-toto/SLSA."""
    from pipetrail.config import redact_url
    from pipetrail.execution.project import Project
    from pipetrail.lineage.exports import (
        OpenLineageHttpEmitter,
        export_run,
        render_export,
    )

    if send_url is not None and format_name != "openlineage":
        raise click.UsageError("--send works with --format openlineage only")
    emitter = None
    if send_url is not None:
        emitter = OpenLineageHttpEmitter(
            send_url,
            api_key=api_key,
            timeout=timeout,
            retries=retries,
            backoff=retry_backoff,
            headers=_headers(headers),
            gzip=gzip,
        )
    if sign and format_name != "intoto":
        raise click.UsageError("--sign works with --format intoto only")
    project = Project.discover(must_exist=True)
    try:
        if sign:
            from pipetrail.cli.audit_cmd import signed_intoto

            document, text = None, signed_intoto(project, run_ref, namespace)
        else:
            governance: tuple[GovernanceRecord, ...] = ()
            if format_name in ("openlineage", "prov"):
                from pipetrail.governance.trail import run_governance

                governance = run_governance(project, run_ref)
            document = export_run(
                project, run_ref, format_name, namespace=namespace, governance=governance
            )
            text = render_export(document, format_name)
    finally:
        project.close()
    if output is not None:
        write_text(output, text)
    elif emitter is None:
        click.echo(text, nl=False)
    if emitter is not None and isinstance(document, list):
        with emitter:
            sent = emitter.emit_all(document)
        click.echo(f"sent {sent} OpenLineage events to {redact_url(emitter.endpoint)}", err=True)


def _headers(values: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for text in values:
        name, colon, value = text.partition(":")
        if not colon or not name.strip() or name != name.strip() or " " in name:
            raise click.BadParameter(
                f"expected 'NAME: VALUE' (e.g. 'X-Team: ml'), got {text!r}", param_hint="--header"
            )
        found[name] = value.strip()
    return found
