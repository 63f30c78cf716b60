"""``pipetrail get`` and ``pipetrail logs``: recorded bytes back out of the store.

Thin: the refs are resolved and the bytes verified by :mod:`pipetrail.lineage.readout`;
this module writes them where they were asked for, whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipetrail.cli.exits import EXIT_BAD_INPUT, emit_json, fail, reporting_errors
from pipetrail.cli.files import output_file_error

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pipetrail.lineage.readout import OutputRef

__all__ = ["get", "logs"]

_CHUNK = 1024 * 1024


@click.command()
@click.argument("ref", metavar="REF")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(path_type=Path),
    help="Where to write it ('-' for stdout). Default: NODE.OUTPUT or the digest, here.",
)
@click.option("--force", is_flag=True, help="Replace an existing file or folder.")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def get(ref: str, output: Path | None, force: bool, as_json: bool) -> None:
    """Write an artifact's stored bytes to a file (REF: digest, prefix or RUN:STEP[.OUTPUT]).

    The bytes are checked against their digest while they are read; a folder artifact
    is written as a folder. Examples: `pipetrail get latest:train.model -o model.skops`,
    `pipetrail get 3f9a2c -o -`.
    """
    from pipetrail.lineage.readout import resolve_output

    with _opened() as project, reporting_errors():
        found = resolve_output(project.reader(), ref)
        store = _store_for(project, found)  # decrypting a sensitive artifact
        target = output if output is not None else Path(found.suggested_name)
        if str(target) == "-":
            if found.serializer == "folder":
                fail(f"artifact {found.digest} is a folder; give -o FOLDER", EXIT_BAD_INPUT)
            _to_stdout(store, found)
            return
        _refuse_existing(target, force)
        if found.serializer == "folder":
            _write_folder(store, found, target)
        else:
            _write_file(store, found, target)
    summary = {
        "digest": found.digest,
        "run_id": found.run_id,
        "node_id": found.node_id,
        "output": found.output,
        "serializer": found.serializer,
        "path": str(target),
    }
    if as_json:
        emit_json(summary)
    else:
        kind = "folder" if found.serializer == "folder" else f"{found.size} bytes"
        click.echo(f"wrote {target} ({kind}, {found.digest})")


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("step", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (with --follow: JSON lines).")
@click.option(
    "-f", "--follow", is_flag=True, help="Print each step's log as it ends, until the run ends."
)
def logs(run_ref: str, step: str | None, as_json: bool, follow: bool) -> None:
    """Print the captured stdout, stderr and logging output of RUN's steps (or one STEP).

    Each line is stored with the run id, step, step-run id, trace id and span id it was
    written under; --json shows them. --follow waits for a running run: each step's log
    is printed when the step ends, and the command ends with the run (--json then prints
    one JSON object per log line).
    """
    from pipetrail.lineage.readout import step_logs

    if follow:
        _follow(run_ref, step, as_json)
        return
    with _opened() as project, reporting_errors():
        reader = project.reader()
        run_id = reader.resolve_run(run_ref)
        found = step_logs(
            reader,
            project.store,
            run_id,
            step,
            store_for=lambda record: project.store_for(record, action="logs", run_id=run_id),
        )
    if as_json:
        emit_json(
            {
                "run_id": run_id,
                "steps": [
                    {
                        "node_id": log.node_id,
                        "step_run_id": log.step_run_id,
                        "status": log.status,
                        "reused_step_run_id": log.reused_step_run_id,
                        "text": log.text,
                        "lines": log.lines,
                    }
                    for log in found
                ],
            }
        )
        return
    if not found:
        click.echo(f"run {run_id} has no steps")
        return
    for log in found:
        _print_log(log, single=step is not None)


def _print_log(log: Any, *, single: bool) -> None:
    if not single:
        reused = log.reused_step_run_id
        origin = f", from cache: step run {reused}" if reused else ""
        click.echo(f"== {log.node_id} ({log.status}{origin})")
    if log.text:
        click.echo(log.text, nl=not log.text.endswith("\n"))
    elif not single:
        click.echo("(no output)")


def _follow(run_ref: str, step: str | None, as_json: bool) -> None:
    import json

    from pipetrail.lineage.readout import follow_logs

    with _opened() as project, reporting_errors():
        run_id = project.reader().resolve_run(run_ref)
        try:
            for log in follow_logs(project, run_id, step):
                if as_json:
                    for line in log.lines:
                        click.echo(json.dumps(line, ensure_ascii=False, default=str))
                else:
                    _print_log(log, single=step is not None)
                sys.stdout.flush()
        except KeyboardInterrupt:
            return


@contextlib.contextmanager
def _opened() -> Iterator[Any]:
    from pipetrail.cli.main import _project

    project = _project(must_exist=True)
    try:
        yield project
    finally:
        project.close()


def _store_for(project: Any, found: OutputRef) -> Any:
    """The project's store, or a decrypting view of it for a sensitive artifact."""
    from pipetrail.store.serializers.base import StoredArtifact

    meta = {"sealed": 1} if found.sealed else {}
    return project.store_for(
        StoredArtifact(found.digest, found.blob, found.serializer, "", found.size or 0, meta),
        action="get",
        run_id=found.run_id,
    )


def _refuse_existing(target: Path, force: bool) -> None:
    if (target.exists() or target.is_symlink()) and not force:
        fail(
            f"{target} already exists; pass --force to replace it, or choose another path with -o",
            EXIT_BAD_INPUT,
        )


@contextlib.contextmanager
def _writing(target: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise output_file_error(target, exc) from exc


def _to_stdout(store: Any, found: OutputRef) -> None:
    from pipetrail.lineage.readout import open_output

    out = sys.stdout.buffer
    with open_output(store, found) as src:
        while chunk := src.read(_CHUNK):
            out.write(chunk)
    out.flush()


def _write_file(store: Any, found: OutputRef, target: Path) -> None:
    """Copy the verified bytes to a temp file beside ``target``, then rename it over."""
    from pipetrail.lineage.readout import open_output

    with _writing(target):
        if target.is_dir() and not target.is_symlink():
            fail(f"{target} is a folder; give a file path with -o", EXIT_BAD_INPUT)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            with open_output(store, found) as src, open(tmp, "xb") as out:
                while chunk := src.read(_CHUNK):
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


def _write_folder(store: Any, found: OutputRef, target: Path) -> None:
    """Materialize the folder beside ``target``, then move it into place."""
    from pipetrail.store.serializers.base import StoredArtifact
    from pipetrail.store.serializers.folder_format import FolderSerializer

    record = StoredArtifact(found.digest, found.blob, "folder", "pathlib.Path", found.size or 0)
    with _writing(target):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        old = target.with_name(f".{target.name}.{secrets.token_hex(4)}.old")
        try:
            FolderSerializer().materialize(record, store, tmp)
            if target.exists() or target.is_symlink():
                os.replace(target, old)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if old.exists() and not target.exists():
                os.replace(old, target)
            raise
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        elif old.exists() or old.is_symlink():
            old.unlink()
