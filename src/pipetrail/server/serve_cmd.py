"""``pipetrail serve``: run the server (uvicorn) over the project here.

Several workers are several processes, each building its own application from the
settings this command puts in the environment (:func:`app_from_environment`); they share
nothing but the project's database and store, which are safe for concurrent readers and
serialize writers (the ledger's write lock).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["app_from_environment", "serve"]

_ROOT_ENV = "PIPETRAIL_SERVE_ROOT"
_KEYS_ENV = "PIPETRAIL_SERVE_SIGNING_KEYS"
_MAX_BODY_ENV = "PIPETRAIL_SERVE_MAX_BODY"
_AUDIT_MAX_AGE_ENV = "PIPETRAIL_SERVE_AUDIT_MAX_AGE"


def app_from_environment() -> FastAPI:
    """The application the settings in the environment describe (one per worker)."""
    from pipetrail.server.app import create_app
    from pipetrail.server.audit_cache import DEFAULT_MAX_AGE
    from pipetrail.server.context import DEFAULT_MAX_BODY, ServerSettings

    keys = os.environ.get(_KEYS_ENV)
    return create_app(
        ServerSettings(
            root=Path(os.environ[_ROOT_ENV]),
            signing_keys=Path(keys) if keys else None,
            max_body=int(os.environ.get(_MAX_BODY_ENV, DEFAULT_MAX_BODY)),
            audit_max_age=float(os.environ.get(_AUDIT_MAX_AGE_ENV, DEFAULT_MAX_AGE)),
        )
    )


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--signing-keys",
    type=click.Path(file_okay=False, path_type=Path),
    help="A key folder (keys/NAME.key) whose users the server may sign approvals for.",
)
@click.option(
    "--max-body", default=1 << 20, show_default=True, type=click.IntRange(1024, 1 << 30),
    help="The largest request body accepted, in bytes.",
)  # fmt: skip
@click.option(
    "--audit-max-age", default=300, show_default=True, type=click.IntRange(0, 86400),
    help="Seconds the audit page keeps its full check of the ledger while no event is "
    "appended (0: check on every load).",
)  # fmt: skip
def serve(
    host: str, port: int, workers: int, signing_keys: Path | None, max_body: int,
    audit_max_age: int,
) -> None:  # fmt: skip
    """Serve the project's HTTP API and web pages (authenticated, deny by default)."""
    import uvicorn

    from pipetrail.config import load_config

    root = load_config(Path.cwd(), must_exist=True).root
    os.environ[_ROOT_ENV] = str(root)
    os.environ[_MAX_BODY_ENV] = str(max_body)
    os.environ[_AUDIT_MAX_AGE_ENV] = str(audit_max_age)
    if signing_keys is not None:
        os.environ[_KEYS_ENV] = str(signing_keys.resolve())
    app_from_environment()  # a broken project or route table fails here, not in a worker
    click.echo(f"serving {root} on http://{host}:{port} ({workers} worker(s))", err=True)
    uvicorn.run(
        "pipetrail.server.serve_cmd:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        proxy_headers=True,
        server_header=False,
    )
