"""``pipetrail model``: register, list and show model versions, and their history."""

from __future__ import annotations

from typing import Any

import click

from pipetrail.cli.exits import emit_json
from pipetrail.cli.user_cmd import governance

__all__ = ["model"]


@click.group()
def model() -> None:
    """The model registry: versions bound to artifacts, aliases, the decision trail."""


@model.command("register")
@click.argument("name")
@click.option("--from", "ref", required=True, metavar="RUN:STEP[.OUTPUT]", help="The artifact.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def model_register(name: str, ref: str, as_json: bool) -> None:
    """Register the artifact REF names as the next version of model NAME."""
    with governance(acts=True) as gov:
        data = gov.register(name, ref)
    if as_json:
        emit_json(data)
        return
    click.echo(f"registered {name}:{data['version']} ({data['digest']}, run {data['run_id']})")


@model.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def model_list(as_json: bool) -> None:
    """List the models, their versions and aliases."""
    from pipetrail.governance.views import list_models

    with governance() as gov:
        rows = list_models(gov.state())
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo("no models yet: `pipetrail model register NAME --from RUN:STEP` adds one")
    for row in rows:
        aliases = ", ".join(f"{a} -> {v}" for a, v in row["aliases"].items()) or "no alias"
        click.echo(f"{row['model']}  {row['versions']} versions  {aliases}")


@model.command("show")
@click.argument("ref", metavar="NAME[:VERSION]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def model_show(ref: str, as_json: bool) -> None:
    """Show a model version: its artifact, source run, metrics, gates, lineage, aliases."""
    from pipetrail.governance.service import parse_model_ref
    from pipetrail.governance.views import model_show as show

    name, version = parse_model_ref(ref)
    with governance() as gov:
        data = show(gov.project, gov.state(), name, version)
    if as_json:
        emit_json(data)
        return
    lines = [
        f"{data['model']}:{data['version']}  {data['digest']}",
        f"  registered by {data['registered_by']} at {data['registered_at']}",
        f"  aliases: {', '.join(data['aliases']) or 'none'}",
        f"  versions: {', '.join(str(v['version']) for v in data['versions'])}",
    ]
    run = data["source_run"]
    if run:
        lines.append(f"  source: run {run['run_id']} ({run['pipeline']}, {run['status']}), "
                     f"step {data['node_id']}.{data['output']}")  # fmt: skip
        lines.append(f"  params: {run['params']}")
        lines += [f"  metric {metric} = {value:g}" for metric, value in run["metrics"].items()]
        lines.append(f"  contracts: {run.get('contracts')}")
        lines += [
            f"  gate at {gate['ts']}: {'passed' if gate['passed'] else 'FAILED'}"
            for gate in run["gates"]
        ]
        lines += [f"  from source {source}" for source in run.get("lineage_sources", [])]
    lines += [
        f"  decision ({decision['kind']}) by {decision['by']}: {decision['text']}"
        for decision in data["decisions"]
    ]
    click.echo("\n".join(lines + [_history_line(row) for row in data["history"]]))


def _print_history(rows: list[dict[str, Any]]) -> None:
    # One write: a long history costs one echo, not one per line.
    if rows:
        click.echo("\n".join(_history_line(row) for row in rows))


def _history_line(row: dict[str, Any]) -> str:
    sig = "" if row["signature"] == "verified" else f"  [{row['signature']}]"
    head = f"{row['ts']}  #{row['seq']}  {row['by']}: "
    try:
        return head + _history_text(row) + sig
    except (KeyError, TypeError):  # an event that did not verify may lack any field
        return head + str(row["event"]) + sig


def _history_text(row: dict[str, Any]) -> str:
    event = row["event"]
    if event == "model.registered":
        text = f"registered version {row['version']} ({row['digest']})"
    elif event == "promotion.requested":
        checks = ", ".join(f"{c['name']}={c['value']!r}" for c in row.get("checks", []))
        what = "a rollback" if row.get("rollback") else "a promotion"
        text = (
            f"requested {what}, {row['request_id']}: version {row['version']} -> {row['alias']} "
            f"(risk {row['risk']}: {row.get('risk_notes') or '-'}); rationale: "
            f"{row['rationale']}; checks: {checks or 'none'}; "
            f"needs {row['policy']['approvals']} approval(s)"
        )
    elif event in ("promotion.approved", "promotion.rejected"):
        verb = "approved" if event.endswith("approved") else "rejected"
        text = f"{verb} {row['request_id']}: {row.get('comment') or '-'}"
    elif event == "alias.moved":
        if row.get("cause") == "rollback":
            text = (
                f"rolled {row['alias']} back from {row['previous']} to {row['version']}: "
                f"{row.get('reason')}"
            )
        else:
            before = "" if row["previous"] is None else f" from {row['previous']}"
            text = f"moved {row['alias']}{before} to {row['version']} ({row.get('request_id')})"
    elif event == "decision.recorded":
        text = f"decision ({row['kind']}): {row['text']}"
    else:
        text = event
    return text


@model.command("history")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def model_history(name: str, as_json: bool) -> None:
    """Every request, approval, rejection, promotion, rollback and decision of NAME."""
    from pipetrail.governance.views import model_history as history

    with governance() as gov:
        rows = history(gov.state(), name)
    if as_json:
        emit_json(rows)
        return
    _print_history(rows)
