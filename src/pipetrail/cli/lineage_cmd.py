"""``pipetrail lineage``: where an artifact comes from, what was derived from it, and how.

Usage::

    pipetrail lineage REF [--up | --down] [--depth N] [--format tree|json|dot|mermaid]
    pipetrail lineage path A B [--format tree|json|dot|mermaid]

``REF``, ``A`` and ``B`` are an artifact digest or unique prefix (with or without
``blake3:``), a run id, unique prefix or ``latest``, or a step run id. ``lineage`` is a
click group whose first argument, when it is not a subcommand name, is handed to the
default subcommand ``graph``: ``pipetrail lineage X --down`` is ``pipetrail lineage graph
X --down``. So ``path`` is the only word that cannot be a reference, and no digest
(lowercase hex) or run id (starts with the time, ``0``) can be.

Register with ``cli.add_command(lineage)``; errors are pipetrail errors, which the main
group maps to exit codes (2 for a reference that matches nothing or several things, and
for two references with no path between them). No domain logic lives here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from pipetrail.lineage.graph import LineageGraph

__all__ = ["lineage"]

_FORMATS = ("tree", "json", "dot", "mermaid")
_STYLES: dict[str, dict[str, Any]] = {
    "bold": {"bold": True},
    "dim": {"dim": True},
    "green": {"fg": "green"},
    "cyan": {"fg": "cyan"},
    "red": {"fg": "red"},
    "yellow": {"fg": "yellow"},
}
_DEFAULT = "graph"


class _LineageGroup(click.Group):
    """A group whose first argument goes to ``graph`` unless it names a subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [_DEFAULT, *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        formatter.write_usage(ctx.command_path, "REF [--up|--down] [--depth N] [--format F]")
        formatter.write_usage(ctx.command_path, "path A B [--format F]", prefix="   or: ")

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """List the options of the default form (``REF ...``) before the subcommands."""
        default = self.commands[_DEFAULT]
        with click.Context(default, info_name=ctx.info_name, parent=ctx.parent) as sub:
            rows = [
                record
                for param in default.get_params(sub)
                if isinstance(param, click.Option)
                and param is not default.get_help_option(sub)
                and (record := param.get_help_record(sub)) is not None
            ]
        help_rows = [
            record
            for param in self.get_params(ctx)
            if (record := param.get_help_record(ctx)) is not None
        ]
        with formatter.section("Options (pipetrail lineage REF ...)"):
            formatter.write_dl([*rows, *help_rows])
        self.format_commands(ctx, formatter)


def _format_option(func: Any) -> Any:
    func = click.option(
        "--json", "as_json", is_flag=True, help="Same as --format json (like other commands)."
    )(func)
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(_FORMATS),
        default="tree",
        show_default=True,
        help="Terminal tree, or JSON / Graphviz DOT / Mermaid text on stdout.",
    )(func)


@click.group(cls=_LineageGroup, context_settings={"help_option_names": ["-h", "--help"]})
def lineage() -> None:
    """Trace lineage: provenance (--up), impact (--down), or a path between two things.

    REF is an artifact digest or unique prefix, a run (id, prefix or 'latest': all its
    step runs) or a step run id. Upstream goes down to the source files through the step
    runs that executed; a cache hit is shown with the step run it reused. Downstream
    lists every step run (cached ones too), artifact and run derived from REF.
    """


@lineage.command(_DEFAULT)
@click.argument("ref", metavar="REF")
@click.option(
    "--up/--down",
    "up",
    default=True,
    help="Provenance of REF (default), or everything derived from it.",
)
@click.option(
    "--depth",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Follow at most N step runs (default: all the way).",
)
@_format_option
def graph_command(ref: str, up: bool, depth: int | None, fmt: str, as_json: bool) -> None:
    """Upstream (default) or downstream lineage of REF; `pipetrail lineage REF` runs this."""
    from pipetrail.lineage.queries import downstream, upstream

    query = upstream if up else downstream
    graph, purged = _with_reader(
        lambda reader: _purged(reader, query(reader, ref, max_depth=depth))
    )
    _emit(graph, "json" if as_json else fmt, purged)


@lineage.command("path")
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@_format_option
def path_command(a: str, b: str, fmt: str, as_json: bool) -> None:
    """A shortest path from A to B (or B to A): how one was derived from the other."""
    from pipetrail.errors import NotFoundError
    from pipetrail.lineage.queries import path

    graph, purged = _with_reader(lambda reader: _purged(reader, path(reader, a, b)))
    if graph is None:
        raise NotFoundError(
            f"no path between {a!r} and {b!r}: neither was derived from the other; "
            f"see `pipetrail lineage {a} --down`"
        )
    _emit(graph, "json" if as_json else fmt, purged)


def _purged(reader: Any, graph: LineageGraph | None) -> tuple[LineageGraph | None, list[str]]:
    """The graph, and a line for each of its runs a retention policy or a purge removed."""
    from pipetrail.ledger.retention_reads import purged_runs

    notes: list[str] = []
    tombstones = purged_runs(reader) if graph is not None else {}
    for run in graph.runs if graph is not None else ():
        tombstone = tombstones.get(run.run_id)
        if tombstone is not None and tombstone.get("content"):
            what = " and ".join(c.replace("_", " ") for c in tombstone["content"])
            notes.append(
                f"the {what} of run {run.run_id} were purged by policy "
                f"{tombstone['policy']} on {tombstone['purged_at']} (ledger event "
                f"{tombstone['seq']}): those no kept run needs are no longer stored"
            )
        elif tombstone is not None:
            notes.append(
                f"run {run.run_id} was purged by policy {tombstone['policy']} on "
                f"{tombstone['purged_at']} (ledger event {tombstone['seq']}): the objects "
                "no kept run needs are no longer stored"
            )
    return graph, notes


def _with_reader(query: Any) -> Any:
    from pipetrail.config import load_config
    from pipetrail.ledger import open_reader

    reader = open_reader(load_config(must_exist=True).metadata_url)
    try:
        return query(reader)
    finally:
        reader.close()


def _emit(graph: LineageGraph, fmt: str, purged: list[str]) -> None:
    from pipetrail.lineage import render

    if fmt == "tree":
        # click.echo drops the colours when stdout is not a terminal.
        click.echo(
            "\n".join(
                "".join(
                    click.style(text, **_STYLES[style]) if style else text for text, style in line
                )
                for line in render.tree_lines(graph)
            )
        )
        for note in purged:
            click.echo(click.style(note, fg="yellow"))
        return
    text = {"json": render.to_json, "dot": render.to_dot, "mermaid": render.to_mermaid}[fmt]
    click.echo(text(graph), nl=fmt == "json")
