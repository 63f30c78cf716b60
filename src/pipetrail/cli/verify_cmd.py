"""``pipetrail reproduce`` and ``pipetrail check``: parse, call :mod:`pipetrail.verify`, render.

Exit codes (besides those of ``cli.main``): ``reproduce`` exits 0 when the run
reproduced (exactly or within tolerance), 5 when it did not, 1 when a step failed while
re-executing, and 6 when the run cannot be reproduced as recorded (a source tracked by
reference changed, a snapshot is missing, the pipeline file is gone). ``check`` exits 0
when the gate passes and 5 when it fails (a contract, the reproduction, the baseline);
6 as for ``reproduce``. Both exit 4 when the store cannot take a step's outputs (a full
disk: one line naming the folder, the run recorded as failed), and 130 (SIGINT) or 143
(SIGTERM) when interrupted, like ``run`` (see :mod:`pipetrail.cli.interruptible`).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipetrail.cli.args import parse_params, parse_seed
from pipetrail.cli.exits import EXIT_NOT_REPRODUCED, EXIT_RUN_FAILED
from pipetrail.cli.interruptible import interruptible

if TYPE_CHECKING:
    from pipetrail.config import ProjectConfig
    from pipetrail.verify.settings import ReproduceSettings, Tolerance

__all__ = ["check", "reproduce"]

_DEFAULT_PIPELINE = "pipeline.py"


def _tolerances(values: tuple[str, ...]) -> dict[str, Tolerance]:
    from pipetrail.verify.settings import parse_tolerance

    found: dict[str, Tolerance] = {}
    for text in values:
        try:
            name, tol = parse_tolerance(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--tolerance") from None
        found[name] = tol
    return found


def _settings(
    config: ProjectConfig, tolerance: tuple[str, ...], allow_diff: bool
) -> ReproduceSettings:
    from pipetrail.verify.settings import ReproduceSettings

    return ReproduceSettings.from_config(config).with_overrides(
        _tolerances(tolerance), require_identical_artifacts=False if allow_diff else None
    )


def _print_markdown(text: str) -> None:
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.markdown import Markdown

        Console().print(Markdown(text))
    else:
        click.echo(text, nl=False)


def _write_reports(data: dict[str, Any], markdown: str, folder: Path, stem: str) -> list[Path]:
    from pipetrail.cli.files import append_text, write_text

    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    write_text(json_path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    write_text(md_path, markdown)
    written = [json_path, md_path]
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        append_text(Path(summary), markdown + "\n")
    return written


_tolerance_option = click.option(
    "--tolerance",
    "tolerance",
    multiple=True,
    metavar="METRIC=TOL",
    help="A metric's tolerance: METRIC=ABS, METRIC=rel:R or METRIC=abs:A,rel:R; '*' for "
    "every metric. Overrides [reproduce] in pipetrail.toml.",
)
_allow_option = click.option(
    "--allow-artifact-differences",
    "allow_diff",
    is_flag=True,
    help="Judge by the metrics and their tolerances; report differing artifacts only.",
)


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.option(
    "--pipeline",
    "target",
    metavar="FILE.py[:NAME]",
    help="The pipeline to run (default: the file recorded with the run).",
)
@_tolerance_option
@_allow_option
@click.option("--markdown", "markdown_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as Markdown to this file.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No live progress display.")
@interruptible("the reproduction was not compared or recorded; run it again")
def reproduce(
    run_ref: str,
    target: str | None,
    tolerance: tuple[str, ...],
    allow_diff: bool,
    markdown_file: Path | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Execute RUN again, without the cache, and compare everything it produced.

    Uses the run's recorded params, seed and source snapshots; reports the share of
    bit-identical artifacts, where the first difference appears, metric deltas against
    their tolerances, and the environment differences that may explain them.
    """
    from pipetrail.cli.progress import make_observer
    from pipetrail.execution.loader import load_pipeline
    from pipetrail.execution.project import Project
    from pipetrail.verify.markdown import reproduction_markdown
    from pipetrail.verify.reproduce import reproduce_run

    definition, path = load_pipeline(target) if target else (None, None)
    project = Project.discover()
    settings = _settings(project.config, tolerance, allow_diff)
    observer = make_observer(enabled=not quiet and not as_json)
    redirect = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    try:
        with redirect:
            result = reproduce_run(
                project,
                run_ref,
                definition=definition,
                source_file=str(path) if path else None,
                settings=settings,
                observer=observer,
            )
    finally:
        project.close()
    data = result.to_dict()
    text = reproduction_markdown(data)
    if markdown_file is not None:
        from pipetrail.cli.files import write_text

        write_text(markdown_file, text)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        _print_markdown(text)
    if result.verdict == "failed":
        sys.exit(EXIT_RUN_FAILED)
    if not result.ok:
        sys.exit(EXIT_NOT_REPRODUCED)


@click.command()
@click.argument("target", required=False, metavar="[PIPELINE]")
@click.option("-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help="A parameter.")
@click.option("-c", "--params-file", "params_files", multiple=True, metavar="FILE",
              help="A YAML, TOML or JSON file of params (repeatable; -p wins).")  # fmt: skip
@click.option("--seed", "seed_text", metavar="N|random", help="Run seed (default: the project's).")
@click.option("--seeds", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="Also run N more seeds and report each metric's spread.")  # fmt: skip
@click.option("--baseline", metavar="RUN", help="A run the new run must match.")
@_tolerance_option
@_allow_option
@click.option("--report-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write check-RUN.json and check-RUN.md "
              "(default: .pipetrail/reports).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No live progress display.")
@interruptible("the check did not finish and wrote no report; run it again")
def check(
    target: str | None,
    params: tuple[str, ...],
    params_files: tuple[str, ...],
    seed_text: str | None,
    seeds: int,
    baseline: str | None,
    tolerance: tuple[str, ...],
    allow_diff: bool,
    report_dir: Path | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """The CI gate: run PIPELINE, check its contracts, reproduce it, compare.

    PIPELINE is FILE.py or FILE.py:NAME (default: pipeline.py in the project). Exits 0
    only when every contract holds, the run reproduces within tolerance and, with
    --baseline, matches that run. Writes the report as JSON and Markdown (and appends
    the Markdown to $GITHUB_STEP_SUMMARY when that is set).
    """
    from pipetrail.cli.parity_warnings import parity_warnings_to_stderr
    from pipetrail.cli.progress import make_observer
    from pipetrail.execution.loader import load_pipeline
    from pipetrail.execution.params_files import load_params_file
    from pipetrail.execution.project import Project
    from pipetrail.verify.check import run_check
    from pipetrail.verify.markdown import check_markdown

    seed = parse_seed(seed_text)
    files = tuple(load_params_file(name) for name in params_files)
    project = Project.discover()
    try:
        if target is None:
            default = project.root / _DEFAULT_PIPELINE
            if not default.is_file():
                raise click.UsageError(
                    f"no PIPELINE given and {default} does not exist; name the pipeline "
                    "file: pipetrail check FILE.py"
                )
            target = str(default)
        definition, path = load_pipeline(target)
        observer = make_observer(enabled=not quiet and not as_json)
        redirect = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
        with redirect, parity_warnings_to_stderr():
            report = run_check(
                project,
                definition,
                parse_params(params),
                params_files=files,
                seed=seed,
                seeds=seeds,
                baseline=baseline,
                settings=_settings(project.config, tolerance, allow_diff),
                source_file=str(path),
                argv=["pipetrail", *sys.argv[1:]],
                observer=observer,
            )
        folder = report_dir or project.config.state_dir / "reports"
    finally:
        project.close()
    data = report.to_dict()
    text = check_markdown(data)
    written = _write_reports(data, text, folder, f"check-{report.run_id or 'none'}")
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        _print_markdown(text)
        click.echo(f"report: {written[0]} and {written[1]}", err=True)
    if not report.passed:
        sys.exit(EXIT_NOT_REPRODUCED)
