"""The ``pipetrail contracts RUN`` command: every contract check of a run and its result.

Lists, for each step run of RUN with contracts, every boundary (input or output), its
artifact, and each check with its status and a few failing values; a cached step run
shows the results recorded by the step run it reused. ``--json`` prints the same data.
The logic lives in :mod:`pipetrail.execution.contract_records`; ``cli.main`` registers
this command. Listing is a result, not a verdict: it exits 0 also when a contract was
violated (the run itself failed with exit code 1). Exit codes otherwise follow
``cli.main``: 2 for an unknown run or a bad project, 4 when a store cannot be used.
"""

from __future__ import annotations

import json
import sys

import click

from pipetrail.errors import LedgerError, PipetrailError, StoreError

__all__ = ["contracts"]


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def contracts(run_ref: str, as_json: bool) -> None:
    """List every contract check of RUN (id, prefix or 'latest') and its result."""
    from pipetrail.config import load_config
    from pipetrail.execution.contract_records import run_contracts
    from pipetrail.ledger import open_reader

    try:
        reader = open_reader(load_config(must_exist=True).metadata_url)
        try:
            result = run_contracts(reader, run_ref)
        finally:
            reader.close()
    except (LedgerError, StoreError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(4)
    except PipetrailError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True, default=str))
        return
    from pipetrail.cli.contracts_render import make_console, print_contracts

    print_contracts(make_console(), result)
