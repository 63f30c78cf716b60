"""The ``pipetrail`` command: parse arguments, call the library, render the result.

No domain logic lives here. Heavy modules are imported inside the commands that need
them so ``pipetrail --help`` and read-only listings start fast.

Exit codes: 0 success; 1 a run failed (a step raised); 2 bad input (unknown pipeline,
parameter, run or step; invalid configuration); 3 an integrity check failed (ledger or
store); 4 the metadata or artifact store could not be used, or a disk is full; 130 / 143
a run was interrupted by SIGINT / SIGTERM (see :mod:`pipetrail.cli.exits`).
"""

from __future__ import annotations

import contextlib
import gc
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipetrail.cli.args import parse_params, parse_seed
from pipetrail.cli.exits import (
    EXIT_BAD_INPUT,
    EXIT_INTEGRITY,
    EXIT_RUN_FAILED,
    EXIT_STORE,
    disk_full_message,
    emit_json,
    exit_code,
    fail,
    interrupted_exit_code,
    reporting_errors,
    store_failure,
)
from pipetrail.cli.interruptible import interruptible
from pipetrail.cli.short_options import ShortOptionsFirst
from pipetrail.errors import (
    NotFoundError,
    ParamError,
    PipetrailError,
    ProjectError,
    RunInterruptedError,
    StepFailedError,
)

if TYPE_CHECKING:
    from pipetrail.ledger.read_model import RunFilter

__all__ = ["cli", "main"]


def _project(*, must_exist: bool = False) -> Any:
    from pipetrail.execution.project import Project

    return Project.discover(must_exist=must_exist)


def open_project() -> Any:
    """The project of the working directory, for commands that change it (must exist)."""
    from pipetrail.execution.project import Project

    return Project.discover(must_exist=True, writes=True)


# Commands defined in their own modules, imported only when one of them runs (a cached
# `pipetrail run` does not pay for them): name -> (module, attribute, short help). The
# short help is what `pipetrail --help` lists; a test keeps it equal to the command's own.
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "attest": (
        "pipetrail.cli.attest_cmd",
        "attest",
        "Verify signed attestations (in-toto statements in DSSE...",
    ),
    "approve": (
        "pipetrail.cli.promote_cmd",
        "approve",
        "Approve promotion request REQ, signing its content with your...",
    ),
    "check": (
        "pipetrail.cli.verify_cmd",
        "check",
        "The CI gate: run PIPELINE, check its contracts, reproduce...",
    ),
    "compare": ("pipetrail.cli.diff_cmd", "compare", "Compare params and metrics of many runs."),
    "contracts": (
        "pipetrail.cli.contracts_cmd",
        "contracts",
        "List every contract check of RUN (id, prefix or 'latest')...",
    ),
    "decision": (
        "pipetrail.cli.promote_cmd",
        "decision",
        "Signed notes of decisions (data splits, sharing, experiment...",
    ),
    "diff": ("pipetrail.cli.diff_cmd", "diff", "Show what differs between two runs."),
    "drift": (
        "pipetrail.cli.drift_cmd",
        "drift",
        "Show how the tables of RUN_B drift from RUN_A, and where the...",
    ),
    "env": ("pipetrail.cli.env_cmd", "env", "Compare and export the environments runs recorded."),
    "report": (
        "pipetrail.cli.report_cmd",
        "report",
        "Run-by-run analysis of PIPELINE: metric, duration and...",
    ),
    "gc": (
        "pipetrail.cli.gc_cmd",
        "gc",
        "Remove stored objects no kept run needs (after `runs...",
    ),
    "purge": (
        "pipetrail.cli.gc_cmd",
        "purge",
        "Erase a source: delete the runs that read it and remove what...",
    ),
    "export": (
        "pipetrail.cli.export_cmd",
        "export",
        "Export RUN (id, prefix or 'latest') as OpenLineage, W3C PROV...",
    ),
    "get": (
        "pipetrail.cli.get_cmd",
        "get",
        "Write an artifact's stored bytes to a file (REF: digest,...",
    ),
    "metrics": (
        "pipetrail.cli.metrics_cmd",
        "metrics",
        "List RUN's metrics (id, prefix or 'latest'), namespaced with...",
    ),
    "note": (
        "pipetrail.cli.annotate_cmd",
        "note",
        "Add a note (TEXT) to RUN (id, prefix or 'latest').",
    ),
    "tag": (
        "pipetrail.cli.annotate_cmd",
        "tag",
        "Tag RUN (id, prefix or 'latest') with KEY=VALUE pairs;...",
    ),
    "lineage": (
        "pipetrail.cli.lineage_cmd",
        "lineage",
        "Trace lineage: provenance (--up), impact (--down), or a path...",
    ),
    "logs": (
        "pipetrail.cli.get_cmd",
        "logs",
        "Print the captured stdout, stderr and logging output of...",
    ),
    "model": (
        "pipetrail.cli.model_cmd",
        "model",
        "The model registry: versions bound to artifacts, aliases,...",
    ),
    "promote": (
        "pipetrail.cli.promote_cmd",
        "promote",
        "Request that alias --to of model NAME point at VERSION...",
    ),
    "reject": (
        "pipetrail.cli.promote_cmd",
        "reject",
        "Reject promotion request REQ (it is then closed).",
    ),
    "rollback": (
        "pipetrail.cli.promote_cmd",
        "rollback",
        "Move --alias of model NAME back to the version it pointed at...",
    ),
    "keys": (
        "pipetrail.cli.keys_cmd",
        "keys",
        "Keys that protect sensitive artifacts (encryption at rest).",
    ),
    "reproduce": (
        "pipetrail.cli.verify_cmd",
        "reproduce",
        "Execute RUN again, without the cache, and compare everything...",
    ),
    "serve": (
        "pipetrail.server.serve_cmd",
        "serve",
        "Serve the project's HTTP API and web pages (authenticated,...",
    ),
    "sweep": (
        "pipetrail.cli.sweep_cmd",
        "sweep",
        "Run the pipeline in TARGET (FILE.py or FILE.py:NAME) once...",
    ),
    "token": (
        "pipetrail.cli.token_cmd",
        "token",
        "API tokens for `pipetrail serve` (stored as digests,...",
    ),
    "access": (
        "pipetrail.cli.access_cmd",
        "access",
        "The record of reads of sensitive content.",
    ),
    "grant": (
        "pipetrail.cli.access_cmd",
        "grant",
        "Grants to read sensitive content: `pipetrail grant USER...",
    ),
    "user": (
        "pipetrail.cli.user_cmd",
        "user",
        "Users, their keys and roles (recorded as signed ledger events).",
    ),
}


class _LazyGroup(click.Group):
    """A group whose ``lazy`` commands are imported only when one of them is used.

    ``lazy`` maps a command's name to ``(module, attribute, short help)``; ``--help``
    lists the short help without importing the module (a test keeps them equal).
    """

    def __init__(
        self, *args: Any, lazy: dict[str, tuple[str, str, str]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, tuple[str, str, str]] = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in self.lazy:
            return found
        import importlib

        module, attribute, _ = self.lazy[cmd_name]
        command: click.Command = getattr(importlib.import_module(module), attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(map(len, names))
        rows = []
        for name in names:
            if name in self.lazy and name not in self.commands:
                rows.append((name, self.lazy[name][2]))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class _Group(_LazyGroup):
    command_class = ShortOptionsFirst  # `run -q` parses without building an error

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("lazy", LAZY_COMMANDS)
        super().__init__(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (NotFoundError, ProjectError) as exc:
            fail(str(exc), EXIT_BAD_INPUT)
        except PipetrailError as exc:
            fail(str(exc), exit_code(exc))
        except OSError as exc:
            message = disk_full_message(exc)
            if message is None:
                raise
            fail(message, EXIT_STORE)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pipetrail", prog_name="pipetrail")
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    envvar="PIPETRAIL_LOG_FORMAT",
    help="Structured log lines on stderr (run, step and trace ids); needs structlog.",
)
@click.pass_context
def cli(ctx: click.Context, log_format: str | None) -> None:
    """Reproducible, auditable, traceable ML pipelines."""
    if log_format is not None:
        from pipetrail.observability.logs import configure_logging, logging_kept

        # The handler is the command's: taken off (and the root logger as it was) when it
        # ends, so a command run in a process that goes on (click's runner, a notebook,
        # library use) leaves no handler behind on a stream that may be gone.
        ctx.call_on_close(logging_kept())
        try:
            configure_logging(log_format)
        except PipetrailError as exc:
            fail(str(exc), EXIT_BAD_INPUT)


@cli.command()
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--ledger", metavar="URL", help="Metadata store URL (postgresql://... for a team).")
@click.option("--store", "store_url", metavar="s3://BUCKET/PREFIX", help="Artifact store in S3.")
def init(folder: Path | None, ledger: str | None, store_url: str | None) -> None:
    """Make FOLDER (default: here) a pipetrail project."""
    from pipetrail.config import init_project

    path = init_project((folder or Path.cwd()).resolve(), metadata=ledger, store=store_url)
    click.echo(f"Initialized pipetrail project: {path}")
    from pipetrail.execution.project import Project
    from pipetrail.governance.service import Governance

    project = Project.at(path.parent)
    try:
        public = Governance(project).bootstrap()
        click.echo(f"You are its first admin (key {public.key_id})")
    except PipetrailError as exc:  # the project is made; the admin can be added later
        click.echo(f"warning: no admin recorded ({exc}); run `pipetrail user init`", err=True)
    finally:
        project.close()
    _rollback_journal(project.config.metadata_url)


def _rollback_journal(url: str) -> None:
    """Leave a new SQLite ledger in rollback-journal mode (the first writer makes it WAL).

    Read-only commands then add no ``-wal``/``-shm`` files to a project nobody ran in.
    """
    import sqlite3

    from pipetrail.ledger.open import sqlite_target

    target = sqlite_target(url)
    if target is None:
        return
    with contextlib.suppress(sqlite3.Error):
        connection = sqlite3.connect(str(target[0]), timeout=5)
        try:
            connection.execute("PRAGMA journal_mode=DELETE")
        finally:
            connection.close()


@cli.command()
@click.argument("target")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="A parameter.")
@click.option("--no-cache", is_flag=True, help="Execute every step, reuse nothing.")
@click.option("--seed", "seed_text", metavar="N|random", help="Run seed (default: the project's).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No live progress display.")
@click.option(
    "-c",
    "--params-file",
    "params_files",
    multiple=True,
    metavar="FILE",
    help="Params from a YAML, TOML or JSON file; repeatable, later files and -p win.",
)
@click.option(
    "--parity",
    "parity_mode",
    type=click.Choice(["off", "warn", "strict"]),
    help="Compare the environment with a reference run's first (default: the project's).",
)
@click.option("--reference", metavar="RUN", help="The parity reference run.")
@click.option(
    "--rehash", is_flag=True, help="Hash every source file again, ignoring the stat cache."
)
@click.option("--name", "run_name", metavar="NAME", help="A name for the run.")
@click.option(
    "--tag", "tag_items", multiple=True, metavar="KEY=VALUE", help="A tag for the run; repeatable."
)
@click.option(
    "--executor",
    "executor_name",
    metavar="inline|processes|dask[=ADDRESS]",
    help="Where steps execute (default: the project's executor).",
)
@click.option(
    "--keep-going",
    is_flag=True,
    help="When a step fails, still run the steps that do not depend on it.",
)
@interruptible()
def run(
    target: str,
    params: tuple[str, ...],
    no_cache: bool,
    seed_text: str | None,
    as_json: bool,
    quiet: bool,
    params_files: tuple[str, ...],
    parity_mode: str | None,
    reference: str | None,
    rehash: bool,
    run_name: str | None,
    tag_items: tuple[str, ...],
    executor_name: str | None,
    keep_going: bool,
) -> None:
    """Run the pipeline in TARGET (FILE.py or FILE.py:NAME)."""
    from pipetrail.cli.parity_warnings import parity_warnings_to_stderr
    from pipetrail.cli.progress import make_observer
    from pipetrail.execution.loader import load_pipeline
    from pipetrail.execution.outcome import run_outcome
    from pipetrail.execution.runner import RunOptions, run_pipeline
    from pipetrail.ledger.annotations import parse_tag_assignments, validate_name

    seed = parse_seed(seed_text)
    tags = parse_tag_assignments(tag_items)
    if run_name is not None:
        run_name = validate_name(run_name)
    files = _params_files(params_files)
    definition, path = load_pipeline(target)
    project = _project()
    if reference and (parity_mode or project.config.parity) == "off":
        fail(
            "--reference needs --parity warn|strict (or parity in pipetrail.toml)",
            EXIT_BAD_INPUT,
        )
    observer = make_observer(enabled=not quiet and not as_json)
    options = RunOptions(
        cache=not no_cache,
        seed=seed,
        observer=observer,
        source_file=str(path),
        argv=["pipetrail", *sys.argv[1:]],
        params_files=files,
        parity=parity_mode,
        parity_reference=reference,
        rehash=rehash,
        name=run_name,
        tags=tags or None,
        executor=executor_name,
        keep_going=keep_going,
    )
    # With --json, stdout carries only the JSON document: what steps print goes to stderr.
    redirect = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    try:
        try:
            with redirect, parity_warnings_to_stderr():
                result = run_pipeline(definition, parse_params(params), project, options)
        except StepFailedError as exc:
            summary = _run_summary(project, exc.run_id)
            if as_json:
                emit_json(summary)
            if store_failure(exc) is not None:  # the store failed, not the step's code
                fail(str(exc), EXIT_STORE)
            if not as_json:
                from pipetrail.cli.render import print_run_failure

                print_run_failure(summary)
            sys.exit(EXIT_RUN_FAILED)
        except RunInterruptedError as exc:
            if exc.run_id is None:
                raise
            summary = _run_summary(project, exc.run_id)
            if as_json:
                emit_json(summary)
            from pipetrail.cli.render import print_run_interrupted

            print_run_interrupted(summary, exc.signal_name)
            sys.exit(interrupted_exit_code(exc.signal_name))
        # The end-of-run line needs only the statuses; --json prints the whole summary.
        if as_json:
            summary = _run_summary(project, result.id)
        else:
            summary = run_outcome(project.reader(), result.id)
        from pipetrail.cli.audit_cmd import after_run_checkpoint

        after_run_checkpoint(project)  # when pipetrail.toml asks for one ([audit])
    finally:
        project.close()
    if as_json:
        emit_json(summary)
    else:
        from pipetrail.cli.render import print_run_done

        print_run_done(summary)


def _run_summary(project: Any, run_id: str) -> dict[str, Any]:
    """Everything recorded about the run (``--json``, and after a failure)."""
    from pipetrail.execution.explain import run_summary

    summary: dict[str, Any] = run_summary(project.reader(), run_id)
    return summary


def _params_files(names: tuple[str, ...]) -> tuple[Any, ...]:
    if not names:  # most runs: no need to import the YAML/TOML readers
        return ()
    from pipetrail.execution.params_files import load_params_file

    return tuple(load_params_file(name) for name in names)


# The subcommands of `runs` and `audit` defined in their own modules (see _LazyGroup).
RUNS_COMMANDS: dict[str, tuple[str, str, str]] = {
    "delete": (
        "pipetrail.cli.gc_cmd",
        "runs_delete",
        "Mark runs deleted (recorded in the ledger, with a reason); `gc`...",
    ),
    "pin": (
        "pipetrail.cli.gc_cmd",
        "runs_pin",
        "Pin RUN: no retention policy deletes it (a `pinned` tag,...",
    ),
    "unpin": (
        "pipetrail.cli.gc_cmd",
        "runs_unpin",
        "Unpin RUN: retention policies apply to it again.",
    ),
}
AUDIT_COMMANDS: dict[str, tuple[str, str, str]] = {
    "checkpoint": (
        "pipetrail.cli.audit_cmd",
        "checkpoint",
        "Sign the ledger's size and Merkle root; keep it outside...",
    ),
    "prove": (
        "pipetrail.cli.audit_cmd",
        "prove",
        "Print the proof (JSON) that an event is in the ledger's...",
    ),
    "bundle": (
        "pipetrail.cli.bundle_cmd",
        "bundle",
        "Write an offline audit bundle of a run, or of a model...",
    ),
    "verify-bundle": (
        "pipetrail.cli.bundle_cmd",
        "verify_bundle",
        "Verify an audit bundle offline: every digest, proof and...",
    ),
}


@cli.group(cls=_LazyGroup, lazy=RUNS_COMMANDS, invoke_without_command=True)
@click.option("-n", "--limit", default=20, show_default=True, help="How many runs.")
@click.option("--pipeline", help="Only runs of this pipeline.")
@click.option("--status", help="Only runs with this status.")
@click.option(
    "--param",
    "param_items",
    multiple=True,
    metavar="NAME=VALUE",
    help="Only runs with this param value.",
)
@click.option(
    "--tag", "tag_items", multiple=True, metavar="KEY=VALUE", help="Only runs with this tag."
)
@click.option(
    "--where",
    "where",
    multiple=True,
    metavar="EXPR",
    help="Only runs where EXPR holds, e.g. 'metrics.f1 > 0.9'.",
)
@click.option(
    "--sort",
    metavar="FIELD [asc|desc]",
    help="Order, e.g. 'metrics.f1 desc' (default: newest first).",
)
@click.option(
    "--columns",
    "columns",
    multiple=True,
    metavar="FIELDS",
    help="Add columns, e.g. params.C,metrics.f1.",
)
@click.option("--since", metavar="TIME", help="Only runs started at or after TIME (ISO 8601).")
@click.option(
    "--purpose",
    type=click.Choice(["run", "reproduce", "check"]),
    help="Only runs made for this purpose.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def runs(
    ctx: click.Context,
    limit: int,
    pipeline: str | None,
    status: str | None,
    param_items: tuple[str, ...],
    tag_items: tuple[str, ...],
    where: tuple[str, ...],
    sort: str | None,
    columns: tuple[str, ...],
    since: str | None,
    purpose: str | None,
    as_json: bool,
) -> None:
    """List runs, newest first (deleted runs left out); filter by params, tags, metrics.

    Examples: `pipetrail runs --where 'metrics.f1 > 0.9' --sort 'metrics.f1 desc'`,
    `pipetrail runs --param C=0.5 --tag stage=prod --columns params.C,metrics.f1`.
    `pipetrail runs delete RUN... --reason TEXT` deletes runs.
    """
    if ctx.invoked_subcommand is not None:
        return
    from pipetrail.config import load_config
    from pipetrail.ledger import open_reader

    filtered = any((pipeline, status, param_items, tag_items, where, since, purpose))
    # Only options can make the listing of a ledger with no run other than empty (they
    # are checked against what runs record): without them, such a ledger is answered
    # without importing the read model (`pipetrail runs` in a new project).
    plain = not (filtered or sort or columns)
    with reporting_errors():
        if limit < 0:
            raise ParamError(f"--limit {limit}: give 0 or more runs")
        query: RunFilter | None = None
        shown: list[str] = []
        if not plain:
            from pipetrail.ledger.annotations import parse_tag_assignments
            from pipetrail.ledger.read_model import RunFilter
            from pipetrail.ledger.run_query import parse_columns, parse_sort, parse_where

            query = RunFilter(
                pipeline=pipeline,
                status=status,
                purpose=purpose,
                params=_param_filters(param_items),
                tags=parse_tag_assignments(tag_items) if tag_items else None,
                since=since,
                where=tuple(parse_where(where)) if where else (),
                sort=parse_sort(sort) if sort else None,
                limit=limit,
            )
            shown = parse_columns(columns) if columns else []
        reader = open_reader(load_config(must_exist=True).metadata_url)
        try:
            if plain and not reader.has_runs():
                rows: list[dict[str, Any]] = []
            else:
                from pipetrail.execution.explain import list_runs

                # With no option, list_runs's own filter: no condition, newest first.
                rows = list_runs(reader, query=query, limit=limit, columns=shown)
        finally:
            reader.close()
    if as_json:
        emit_json(rows)
        return
    if not rows and filtered:
        click.echo("no run matches")
        return
    from pipetrail.cli.render import print_runs

    print_runs(rows, columns=shown)


def _param_filters(items: tuple[str, ...]) -> dict[str, Any] | None:
    """``--param NAME=VALUE`` texts as values (YAML scalars: numbers, true/false, text)."""
    if not items:
        return None
    from pipetrail.ledger.run_query import parse_value

    found: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip():
            raise ParamError(f"--param {item!r} must be NAME=VALUE (for example C=0.5)")
        found[name.strip()] = parse_value(text.strip())
    return found


@cli.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--logs", is_flag=True, help="Also print each step's captured stdout/stderr.")
@click.option(
    "--git-diff",
    "git_diff",
    is_flag=True,
    help="Also print the uncommitted changes (git diff) recorded with the run.",
)
def show(run_ref: str, as_json: bool, logs: bool, git_diff: bool) -> None:
    """Show everything recorded about RUN (id, prefix or 'latest').

    --logs and --git-diff read the captured text from the store (verified); a blob that
    is missing or corrupt is named on stderr and the exit code is 3.
    """
    from pipetrail.config import load_config
    from pipetrail.execution.explain import run_summary
    from pipetrail.governance.state import read_run_state
    from pipetrail.governance.verified import user_cache
    from pipetrail.governance.views import decisions_about
    from pipetrail.ledger import open_reader

    config = load_config(must_exist=True)
    reader = open_reader(config.metadata_url)
    captured: dict[str, Any] = {}
    try:
        summary = run_summary(reader, run_ref)
        if logs or git_diff:
            from pipetrail.cli.captured import read_captured
            from pipetrail.execution.store_open import open_store

            has_store = config.store_url is not None or config.artifacts.is_dir()
            store = open_store(config, create=False) if has_store else None
            captured = read_captured(reader, store, summary, logs=logs, git_diff=git_diff)
        cache = user_cache(config.metadata_url)
        run_state = read_run_state(reader, summary["run_id"], cache)
        decisions = decisions_about(run_state, run_id=summary["run_id"])
    finally:
        reader.close()
    errors: list[str] = []
    if as_json:
        if "logs" in captured:
            summary["captured_logs"] = {k: v.to_dict() for k, v in captured["logs"].items()}
            errors += [v.error for v in captured["logs"].values() if v.error]
        if "git_diff" in captured:
            summary["git_diff"] = captured["git_diff"].to_dict()
            errors += [captured["git_diff"].error] if captured["git_diff"].error else []
        emit_json({**summary, "decisions": decisions})
    else:
        from pipetrail.cli.render import print_run

        print_run(summary)
        for d in decisions:
            click.echo(f"decision ({d['kind']}) by {d['by']} at {d['ts']}: {d['text']}")
        if captured:
            from pipetrail.cli.captured import print_captured

            errors = print_captured(summary, captured)
    if errors:
        for message in errors[:-1]:
            click.echo(f"error: {message}", err=True)
        fail(errors[-1], EXIT_INTEGRITY)


@cli.command()
@click.argument("run_ref", metavar="RUN")
@click.argument("step_name", metavar="STEP")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def why(run_ref: str, step_name: str, as_json: bool) -> None:
    """Explain STEP's cache decision in RUN: each key component and what changed."""
    from pipetrail.config import load_config
    from pipetrail.execution.explain import explain_step
    from pipetrail.ledger import open_reader

    reader = open_reader(load_config(must_exist=True).metadata_url)
    try:
        report = explain_step(reader, run_ref, step_name)
    finally:
        reader.close()
    if as_json:
        emit_json(report)
        return
    from pipetrail.cli.render import print_why

    print_why(report)


@cli.group(cls=_LazyGroup, lazy=AUDIT_COMMANDS)
def audit() -> None:
    """Check the ledger's integrity; rebuild its derived tables."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--checkpoints",
    type=click.Path(path_type=Path),
    metavar="DIR|REPO",
    help="Also prove the ledger consistent with every signed checkpoint kept there.",
)
@click.option(
    "--key",
    "keys",
    multiple=True,
    metavar="NAME=PUBLICKEY",
    help="A key trusted to sign checkpoints (default: the keys file beside them).",
)
def audit_verify(as_json: bool, checkpoints: Path | None, keys: tuple[str, ...]) -> None:
    """Re-hash the ledger and compare the derived tables with the events (exit 3 if not)."""
    from pipetrail.cli import audit_cmd
    from pipetrail.execution.integrity import verify_ledger
    from pipetrail.governance.verify import audit_signatures, verify_governance

    loaded = None if checkpoints is None else audit_cmd.load_checkpoints(checkpoints, keys)
    project = _project(must_exist=True)
    try:
        # The signatures are checked in the audit's snapshot once the chain verified,
        # while its second process (on a large ledger) still works; that process takes
        # on some of them once its replay is done.
        signatures = audit_signatures()
        report = verify_ledger(project, signatures)
        if report["first_bad_seq"] is None:
            governance = signatures.result
            if governance is None:  # not run (no derived check): read on its own
                governance = verify_governance(project.ledger, chain_verified=True)
            report["governance"] = governance
            report["ok"] = report["ok"] and governance["ok"]
        if loaded is not None:
            report["checkpoints"] = audit_cmd.verify_against_checkpoints(project, loaded, report)
            report["ok"] = report["ok"] and report["checkpoints"]["ok"]
    finally:
        project.close()
    for problem in report.get("governance", {}).get("problems", []):
        click.echo(f"signature check FAILED: {problem['message']}", err=True)
    if as_json:
        emit_json(report)
    elif report["first_bad_seq"] is not None:
        click.echo(
            f"ledger TAMPERED at sequence {report['first_bad_seq']}: {report['reason']} "
            f"({report['checked']} events verified before it); the derived tables were "
            "not compared",
            err=True,
        )
    elif report["derived"]:
        for problem in report["derived"]:
            click.echo(f"derived row disagrees with the events: {problem['message']}", err=True)
        click.echo(
            f"{len(report['derived'])} derived rows disagree with the {report['checked']} "
            "verified events; rebuild them from the events with `pipetrail audit rebuild`",
            err=True,
        )
    else:
        click.echo(
            f"ledger intact: {report['checked']} events verified, "
            f"{report['derived_rows']} derived rows match them"
        )
        governance = report["governance"]
        if governance["ok"] and governance["signatures"]:
            click.echo(f"governance intact: {governance['signatures']} signatures verified")
    if checkpoints is not None and not as_json:
        audit_cmd.print_checkpoints(report["checkpoints"], checkpoints)
    if not report["ok"]:
        sys.exit(EXIT_INTEGRITY)


@audit.command("rebuild")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def audit_rebuild(as_json: bool) -> None:
    """Rebuild the derived tables from the verified events; list the rows it changed."""
    from pipetrail.execution.integrity import rebuild_ledger

    project = _project()
    try:
        report = rebuild_ledger(project)
    finally:
        project.close()
    if as_json:
        emit_json(report)
        return
    for change in report["changed"]:
        where = f"{change['table']}[{change['key']}]"
        if change["problem"] == "missing":
            click.echo(f"added {where} (the events record it)")
        elif change["problem"] == "extra":
            click.echo(f"removed {where} (no event records it)")
        else:
            click.echo(f"fixed {change['message']}")
    if not report["changed"]:
        click.echo(
            f"derived tables already match the {report['events']} events "
            f"({report['rows']} rows): nothing changed"
        )
        return
    click.echo(
        f"derived tables rebuilt from {report['events']} events: "
        f"{len(report['changed'])} of {report['rows']} rows changed"
    )


@cli.group()
def store() -> None:
    """Check and tidy the artifact store."""


@store.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def store_verify(as_json: bool) -> None:
    """Re-hash every stored object; report corrupt and missing ones (exit 3 if any)."""
    from pipetrail.config import load_config
    from pipetrail.execution.integrity import verify_artifacts
    from pipetrail.execution.project import Project
    from pipetrail.execution.store_open import open_store

    config = load_config(must_exist=True)
    # Opened as it is: a check creates no folder (only a quarantine, for corrupt objects).
    project = Project(config, store=open_store(config, create=False))
    try:
        report = verify_artifacts(project)
    finally:
        project.close()
    if as_json:
        emit_json(report)
    else:
        click.echo(f"checked {report['checked']} objects in {report['artifacts']}")
        for digest in report["corrupt"]:
            click.echo(f"corrupt (quarantined): {digest}", err=True)
        for digest in report["missing"]:
            click.echo(f"missing: {digest}", err=True)
        _echo_sealed(report["sealed"])
        if report["collected"]:
            click.echo(
                f"{len(report['collected'])} objects named only by deleted runs were "
                "collected by `pipetrail gc` (not an error)"
            )
        if report["ok"]:
            click.echo("store intact")
    if not report["ok"]:
        sys.exit(EXIT_INTEGRITY)


def _echo_sealed(sealed: dict[str, Any]) -> None:
    """What ``store verify`` found of the sensitive (encrypted) objects."""
    if not sealed["objects"]:
        return
    if sealed["keys"] is not None:
        click.echo(
            f"{sealed['objects']} encrypted objects re-hashed but not decrypted: {sealed['keys']}"
        )
    else:
        click.echo(f"{sealed['decrypted']} of {sealed['objects']} encrypted objects decrypted")
    for failed in sealed["failed"]:
        click.echo(f"does not decrypt: {failed['blob']}: {failed['error']}", err=True)


@store.command("clean")
@click.option(
    "--older-than",
    default="1h",
    show_default=True,
    help="Only remove leftovers last modified this long ago (90, 30m, 1h, 2d).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def store_clean(older_than: str, as_json: bool) -> None:
    """Remove temp files and unused segment files that killed writers left behind."""
    from pipetrail.cli.args import parse_duration
    from pipetrail.execution.integrity import clean_store

    seconds = parse_duration(older_than, option="--older-than")
    project = _project()
    try:
        report = clean_store(project, older_than=seconds)
    finally:
        project.close()
    if as_json:
        emit_json(report)
    else:
        click.echo(f"removed {report['removed']} leftover files from {report['artifacts']}")


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="pipetrail")
    finally:
        # The command is done and the process exits next: spare the interpreter's
        # shutdown collections the whole heap (about 4% of the instructions of a cached
        # `pipetrail run`). Modules are still torn down and their objects freed by
        # reference counting; only cyclic garbage the command left is not finalized,
        # and nothing relies on that (files and databases are closed before this).
        gc.freeze()


if __name__ == "__main__":  # pragma: no cover
    main()
