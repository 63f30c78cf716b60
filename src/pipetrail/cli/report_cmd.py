"""The ``pipetrail report`` command: parse, call observability, write.

``report PIPELINE`` gathers the pipeline's runs (:mod:`pipetrail.observability.report_data`)
and prints them as Markdown; ``-o report.html`` writes the self-contained HTML page,
``-o report.md`` the Markdown (:mod:`pipetrail.observability.report_render`); ``--json``
prints the figures as JSON. ``--since`` takes an ISO date or time. Exits 2 for an unknown
pipeline, a bad date or an output name with another suffix, or a file that cannot be
written (4 when the disk is full). ``cli.main`` registers this command.
"""

from __future__ import annotations

from pathlib import Path

import click

from pipetrail.cli.exits import EXIT_BAD_INPUT, emit_json, fail, reporting_errors

__all__ = ["report"]

_FORMATS = {".html": "html", ".htm": "html", ".md": "markdown", ".markdown": "markdown"}


@click.command()
@click.argument("pipeline")
@click.option("--since", metavar="DATE", help="Only runs started at or after DATE (ISO-8601).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report to this file: .html (a self-contained page) or .md.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def report(pipeline: str, since: str | None, output: Path | None, as_json: bool) -> None:
    """Run-by-run analysis of PIPELINE: metric, duration and cache-hit trends.

    Also failures by cause, drift events and gate results. Markdown on stdout, or -o
    report.html (one self-contained page) or -o report.md.
    """
    from pipetrail.execution.project import Project
    from pipetrail.observability.report_data import collect_report
    from pipetrail.observability.report_render import report_html, report_markdown

    kind = None
    if output is not None:
        kind = _FORMATS.get(output.suffix.lower())
        if kind is None:
            fail(
                f"cannot tell the format of {output}: name it .html (a self-contained page) "
                "or .md (Markdown)",
                EXIT_BAD_INPUT,
            )
    with reporting_errors():
        project = Project.discover(must_exist=True)
        try:
            found = collect_report(project, pipeline, since=since)
        finally:
            project.close()
        if as_json:
            emit_json(found.to_dict())
            return
        if output is None:
            click.echo(report_markdown(found), nl=False)
            return
        from pipetrail.cli.files import write_text

        write_text(output, report_html(found) if kind == "html" else report_markdown(found))
    click.echo(f"report of {len(found.runs)} run(s) of {pipeline} written to {output}")
