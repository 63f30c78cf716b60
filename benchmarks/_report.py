"""The results section of benchmarks/README.md, written from one run.

``run_all.py --write-readme`` runs every benchmark once and replaces the part of
``benchmarks/README.md`` between :data:`BEGIN` and :data:`END` with :func:`render_results`:
the commit measured (and whether the working tree differed from it), the date, the
machine (CPUs, memory, Python), the load average before and after, how busy other
processes kept the CPUs during each benchmark, and the table of every row of that run.
Everything outside the markers (how each benchmark works, how to read it) is written by
hand and kept as it is. No figure in the section comes from anywhere but that one run.

Pure formatting: ``tests/unit/test_benchmark_report.py`` checks it on made-up figures.
Standard library only.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from _common import Result, _fmt, format_load

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

    from _common import RunInfo

BEGIN = "<!-- BEGIN RESULTS: written by `benchmarks/run_all.py --write-readme`; do not edit -->"
END = "<!-- END RESULTS -->"
_HEADERS = ["benchmark", "measured", "n", "median", "min", "max", "unit", "target", "result"]


class MarkersMissing(ValueError):
    """The README lacks the markers that delimit the generated section."""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


_FLAGGED = ("FAIL", "not measured", "inconclusive")  # printed in bold


def results_table(results: Sequence[Result]) -> str:
    """The rows as a Markdown table, numbers right-aligned."""
    lines = [
        "| " + " | ".join(_HEADERS) + " |",
        "|---|---|--:|--:|--:|--:|---|---|---|",
    ]
    for r in results:
        cells = [
            f"`{r.name}`",
            _cell(r.measured),
            str(r.n),
            _fmt(r.median),
            _fmt(r.min),
            _fmt(r.max),
            _cell(r.unit),
            _cell(r.target),
            f"**{r.verdict}**" if r.verdict in _FLAGGED else r.verdict,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_line(results: Sequence[Result], crashed: Sequence[str]) -> str:
    """``3 targets met, 1 missed (a.b), 1 not measured (c.d: why); crashed: e``."""
    met = [r.name for r in results if r.verdict == "PASS"]
    missed = [r.name for r in results if r.verdict == "FAIL"]
    unmeasured = [f"{r.name}: {r.missing}" for r in results if r.missing and r.target != "-"]
    undecided = [r.name for r in results if r.verdict == "inconclusive"]
    parts = [f"{len(met)} targets met", f"{len(missed)} missed"]
    if missed:
        parts[-1] += f" ({', '.join(missed)})"
    if undecided:
        parts.append(f"{len(undecided)} inconclusive ({', '.join(undecided)})")
    if unmeasured:
        parts.append(f"{len(unmeasured)} not measured ({'; '.join(unmeasured)})")
    text = ", ".join(parts)
    if crashed:
        text += f"; crashed: {', '.join(crashed)}"
    return text


def render_results(
    info: RunInfo,
    results: Sequence[Result],
    loads: Mapping[str, float | None],
    crashed: Sequence[str],
    elapsed_s: float,
) -> str:
    """The generated section, markers included."""
    command = " ".join(["python", *info.command])
    background = ", ".join(
        f"{name} {'n/a' if cpus is None else f'{cpus:.2f}'}" for name, cpus in loads.items()
    )
    mode = "quick run (fewer repetitions)" if info.quick else "full run"
    lines = [
        BEGIN,
        "## Results",
        "",
        f"One {mode} of every benchmark, at one commit: `{command}`. Every figure below",
        "comes from that run; a verdict (PASS, FAIL) is given only where a target exists,",
        "checked on the median of what was measured in that run (`inconclusive` where a",
        "row's spread over its rounds leaves the target undecided).",
        "",
        "| | |",
        "|---|---|",
        f"| commit | `{_cell(info.revision())}` |",
        f"| date | {info.started}; the run took {elapsed_s:.0f} s |",
        f"| machine | {_cell(info.machine())} |",
        f"| load average (1 / 5 / 15 min) | {format_load(info.load_before)} before, "
        f"{format_load(info.load_after)} after |",
        f"| background load (CPUs other processes kept busy, of {info.cpus or '?'}) | "
        f"{background or '-'} |",
        "",
        f"**{summary_line(results, crashed)}**",
        "",
        results_table(results),
        END,
    ]
    return "\n".join(lines) + "\n"


def replace_section(readme: str, section: str) -> str:
    """Return ``readme`` with the text from :data:`BEGIN` to :data:`END` replaced.

    Raises:
        MarkersMissing: the markers are not there once each, in order.
    """
    start, end = readme.find(BEGIN), readme.find(END)
    if readme.count(BEGIN) != 1 or readme.count(END) != 1 or end < start:
        raise MarkersMissing(
            f"the README must contain the line {BEGIN!r} and, after it, {END!r}, once each; "
            "put them where the results go"
        )
    after = readme[end + len(END) :].removeprefix("\n")
    return readme[:start] + section + after


def write_readme(path: Path, section: str) -> None:
    """Replace the generated section of the README at ``path`` (atomically)."""
    text = replace_section(path.read_text(encoding="utf-8"), section)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
