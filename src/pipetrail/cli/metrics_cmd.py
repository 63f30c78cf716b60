"""``pipetrail metrics RUN [--prefix P]``: a run's metric values, by namespace."""

from __future__ import annotations

import click

from pipetrail.cli.exits import emit_json, reporting_errors

__all__ = ["metrics"]


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.option(
    "--prefix",
    default="",
    metavar="P",
    help="Only metrics whose name (or NODE.NAME) starts with P, e.g. eval/.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def metrics(run_ref: str, prefix: str, as_json: bool) -> None:
    """List RUN's metrics (id, prefix or 'latest'), namespaced with '/'.

    Each logged series' last value, length, min and max, and the numbers steps returned.
    """
    from pipetrail.config import load_config
    from pipetrail.execution.explain import run_metrics
    from pipetrail.ledger import open_reader

    with reporting_errors():
        reader = open_reader(load_config(must_exist=True).metadata_url)
        try:
            run_id = reader.resolve_run(run_ref)
            found = run_metrics(reader, run_id, prefix=prefix)
        finally:
            reader.close()
    if as_json:
        emit_json({"run_id": run_id, "prefix": prefix, "metrics": found})
        return
    if not found:
        where = f" under {prefix!r}" if prefix else ""
        click.echo(f"run {run_id} recorded no metrics{where}")
        return
    width = max(len(m["name"]) for m in found)
    for m in found:
        line = f"{m['name']:<{width}}  {m['value']:.6g}"
        if m.get("count") is not None:
            line += f"  (last of {m['count']}; min {m['min']:.6g}, max {m['max']:.6g})"
        click.echo(line)
