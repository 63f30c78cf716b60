"""``pipetrail promote / approve / reject / rollback / decision``: governed alias moves."""

from __future__ import annotations

import click

from pipetrail.cli.exits import emit_json
from pipetrail.cli.user_cmd import governance

__all__ = ["approve", "decision", "promote", "reject", "rollback"]


@click.command()
@click.argument("ref", metavar="NAME:VERSION")
@click.option("--to", "alias", required=True, help="The alias to move (production, staging...).")
@click.option("--rationale", required=True, help="Why this version should be promoted.")
@click.option("--risk", required=True, type=click.Choice(["low", "medium", "high"]))
@click.option("--risk-notes", default="", help="What could go wrong, and the mitigation.")
@click.option("--json", "as_json", is_flag=True, help='Print {"request_id": ...}.')
def promote(
    ref: str, alias: str, rationale: str, risk: str, risk_notes: str, as_json: bool
) -> None:
    """Request that alias --to of model NAME point at VERSION (checks the policy)."""
    from pipetrail.governance.service import parse_model_ref

    name, version = parse_model_ref(ref, need_version=True)
    assert version is not None  # noqa: S101 - need_version
    with governance(acts=True) as gov:
        data = gov.request_promotion(
            name, version, alias, rationale=rationale, risk=risk, risk_notes=risk_notes
        )
    if as_json:
        emit_json({"request_id": data["request_id"], "checks": data["checks"]})
        return
    for check in data["checks"]:
        click.echo(f"check {check['name']}: passed ({check['detail']})")
    needed = data["policy"]["approvals"]
    click.echo(
        f"request {data['request_id']}: {name}:{version} -> {alias}, needs {needed} approval(s)"
    )
    click.echo(data["request_id"])


def _vote(request: str, comment: str, approve_it: bool, as_json: bool) -> None:
    with governance(acts=True) as gov:
        if approve_it:
            data = gov.approve(request, comment=comment)
        else:
            data = gov.reject(request, comment=comment)
    if as_json:
        emit_json(data)
        return
    where = f"{data['model']}:{data['version']} -> {data['alias']}"
    if data["status"] == "rejected":
        click.echo(f"rejected {data['request_id']} ({where})")
    elif data["moved"]:
        click.echo(f"approved {data['request_id']}: {data['alias']} of {data['model']} now "
                   f"points at version {data['version']}")  # fmt: skip
    else:
        click.echo(f"approved {data['request_id']} ({where}): {data['approvals']} of "
                   f"{data['needed']} approvals")  # fmt: skip


@click.command()
@click.argument("request", metavar="REQ")
@click.option("--comment", default="", help="Recorded with the signed approval.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def approve(request: str, comment: str, as_json: bool) -> None:
    """Approve promotion request REQ, signing its content with your key."""
    _vote(request, comment, True, as_json)


@click.command()
@click.argument("request", metavar="REQ")
@click.option("--comment", default="", help="Recorded with the signed rejection.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def reject(request: str, comment: str, as_json: bool) -> None:
    """Reject promotion request REQ (it is then closed)."""
    _vote(request, comment, False, as_json)


@click.command()
@click.argument("name")
@click.option("--alias", required=True, help="The alias to move back (production...).")
@click.option("--reason", required=True, help="Why: recorded, signed, with the rollback.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def rollback(name: str, alias: str, reason: str, as_json: bool) -> None:
    """Move --alias of model NAME back to the version it pointed at before."""
    with governance(acts=True) as gov:
        data = gov.rollback(name, alias, reason=reason)
    if as_json:
        emit_json(data)
        return
    if data["status"] == "open":
        click.echo(
            f"request {data['request_id']}: roll {alias} of {name} back from version "
            f"{data['previous']} to {data['version']}; the policy needs its approval"
        )
        click.echo(data["request_id"])
        return
    click.echo(f"rolled {alias} of {name} back from version {data['previous']} to "
               f"{data['version']}")  # fmt: skip


@click.group()
def decision() -> None:
    """Signed notes of decisions (data splits, sharing, experiment scoping)."""


@decision.command("add")
@click.option("--about", required=True, metavar="RUN|MODEL", help="A run ref or a model name.")
@click.option("--kind", required=True, type=click.Choice(["scoping", "split", "sharing", "other"]))
@click.argument("text")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def decision_add(about: str, kind: str, text: str, as_json: bool) -> None:
    """Record the decision TEXT about a run or a model, signed by you."""
    with governance(acts=True) as gov:
        data = gov.decide(about, kind, text)
    if as_json:
        emit_json(data)
        return
    click.echo(f"recorded a {kind} decision about {about}")
