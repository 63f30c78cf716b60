"""Terminal rendering of contract results, for ``pipetrail contracts`` and ``show``.

The data comes from :mod:`pipetrail.execution.contract_records`; nothing is computed here.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

__all__ = ["make_console", "print_contracts", "print_contracts_brief"]

_STYLE = {"passed": "green", "failed": "red", "skipped": "yellow"}


def make_console() -> Console:
    """A console on stdout; 160 columns off a terminal, where rich would assume 80."""
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 160
    return Console(highlight=False, soft_wrap=False, width=width)


def _counts(counts: dict[str, int]) -> str:
    parts = [f"{counts.get('passed', 0)} passed"]
    for status in ("failed", "skipped"):
        if counts.get(status):
            parts.append(f"[{_STYLE[status]}]{counts[status]} {status}[/]")
    return ", ".join(parts)


def _examples(check: dict[str, Any]) -> str:
    shown = []
    for example in check.get("examples") or []:
        value = json.dumps(example.get("value"), default=str)
        index = example.get("index")
        shown.append(value if index is None else f"row {index}: {value}")
    return ", ".join(shown)


def _detail(check: dict[str, Any]) -> str:
    parts = []
    if check.get("status") == "failed" and check.get("failures"):
        parts.append(f"{check['failures']} failing")
    if check.get("message"):
        parts.append(str(check["message"]))
    examples = _examples(check)
    if examples:
        parts.append(f"e.g. {examples}")
    return "; ".join(parts)


def _origin(step: dict[str, Any]) -> str:
    if step["status"] == "cached" and step.get("from_step_run_id"):
        return f" (cached: results of step run {step['from_step_run_id']})"
    return ""


def print_contracts_brief(console: Console, steps: list[dict[str, Any]]) -> None:
    """Print a short contract section: one line per step, details of failed checks."""
    checked = [step for step in steps if step.get("contracts")]
    if not checked:
        return
    console.print("[bold]contracts[/]")
    for step in checked:
        found = step["contracts"]
        state = {True: "[green]held[/]", False: "[red]violated[/]"}.get(found["ok"], "unknown")
        labels = ", ".join(f"{b['boundary']}:{b['name']}" for b in found["boundaries"])
        console.print(
            f"  {escape(step['node_id'])}  {state}  {_counts(found['counts'])}  "
            f"[dim]{escape(labels)}{escape(_origin(found))}[/]"
        )
        for boundary in found["boundaries"]:
            for check in boundary.get("checks", []):
                if check.get("status") != "failed":
                    continue
                column = f"column {check['column']!r} " if check.get("column") else ""
                console.print(
                    f"    [red]x[/] {boundary['boundary']} {boundary['name']!r} "
                    f"{escape(column)}{escape(check['check'])}: {escape(_detail(check))}"
                )
        if found.get("report"):
            console.print(f"    [dim]report {found['report']}[/]")


def print_contracts(console: Console, result: dict[str, Any]) -> None:
    """Print every contract check of a run, step by step."""
    console.print(f"[bold]contracts[/] of run {result['run_id']} ({escape(result['pipeline'])})")
    if not result["steps"]:
        console.print("no step of this run declares a contract")
        return
    for step in result["steps"]:
        state = {True: "[green]held[/]", False: "[red]violated[/]"}.get(step["ok"], "unknown")
        console.print(
            f"\n[bold]{escape(step['node_id'])}[/] {state}: {_counts(step['counts'])}"
            f"{escape(_origin(step))}"
        )
        table = Table(show_edge=False, header_style="bold")
        for column in ("boundary", "artifact", "column", "check", "result", "detail"):
            table.add_column(column)
        for boundary in step["boundaries"]:
            label = f"{boundary['boundary']}:{boundary['name']}"
            artifact = (boundary.get("artifact") or "-").removeprefix("blake3:")[:12]
            for check in boundary.get("checks", []):
                status = check.get("status", "passed")
                table.add_row(
                    escape(label),
                    artifact,
                    escape(str(check.get("column") or "-")),
                    escape(str(check["check"])),
                    f"[{_STYLE.get(status, 'white')}]{status}[/]",
                    escape(_detail(check)),
                )
            if boundary.get("note"):
                table.add_row(escape(label), artifact, "-", "note", "-", escape(boundary["note"]))
        console.print(table)
    total = _counts(result["counts"])
    verdict = "[green]all contracts held[/]" if result["ok"] else "[red]contracts violated[/]"
    console.print(f"\n{verdict}: {total}")
