"""Markdown for verification reports: fit for a CI job summary or a pull-request comment.

Both functions take the JSON-able report (``to_dict()``), so a stored report can be
rendered again later, without the objects that produced it.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["check_markdown", "reproduction_markdown"]

_LIMIT = 20  # rows per table; the JSON report has them all


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows[:_LIMIT]]
    if len(rows) > _LIMIT:
        lines.append(f"\n... and {len(rows) - _LIMIT} more (see the JSON report).")
    return lines


def _examples(examples: Any) -> str | None:
    if not isinstance(examples, list) or not examples:
        return None
    parts = []
    for example in examples[:5]:
        if isinstance(example, dict) and example.get("index") is not None:
            parts.append(f"row {example['index']}: {example.get('value')!r}")
        else:
            parts.append(repr(example.get("value") if isinstance(example, dict) else example))
    return ", ".join(parts)


def _param(change: dict[str, Any], side: str) -> str:
    """A param value as JSON text; "(not set)" on the side that lacks it."""
    absent = {"baseline": "added", "current": "removed"}[side]
    if change.get("change") == absent:
        return "(not set)"
    return json.dumps(change.get(side), sort_keys=True, default=str)


def _tolerance(tol: dict[str, Any]) -> str:
    parts = [f"{k} {v:g}" for k, v in sorted(tol.items()) if v]
    return ", ".join(parts) or "exact"


def _short(digest: Any) -> str:
    return str(digest)[7:19] if isinstance(digest, str) else _cell(digest)


def reproduction_markdown(data: dict[str, Any], *, level: int = 2) -> str:
    """Render a reproduction report (``Reproduction.to_dict()``) as Markdown."""
    h = "#" * level
    lines = [
        f"{h} Reproduction of run `{data['original_run_id']}`: {data['verdict']}",
        "",
        f"Re-executed as run `{data['run_id']}`: {data['artifacts_identical']} of "
        f"{data['artifacts_total']} artifacts bit-identical "
        f"({100 * data['identical_share']:.1f}%).",
    ]
    if data.get("error"):
        lines += ["", f"Step `{data['failed_step']}` failed: {data['error']}"]
    if data["differences"]:
        lines += ["", f"{h}# Differing artifacts", ""]
        lines += _table(
            ["step", "output", "recorded", "reproduced", "first difference at"],
            [
                [
                    d["node_id"],
                    d["output"],
                    _short(d["expected"]),
                    _short(d["actual"]),
                    ", ".join(d["first_difference"]),
                ]
                for d in data["differences"]
            ],
        )
    if data["metrics"]:
        lines += ["", f"{h}# Metrics", ""]
        lines += _table(
            ["metric", "recorded", "reproduced", "delta", "tolerance", "ok"],
            [
                [
                    m["name"],
                    m["expected"],
                    m["actual"],
                    m["delta"],
                    _tolerance(m["tolerance"]),
                    "yes" if m["within"] else "**no**",
                ]
                for m in data["metrics"]
            ],
        )
    if data["code_changes"]:
        lines += ["", f"{h}# Code and contracts that changed since the run", ""]
        lines += _table(
            ["step", "change"], [[c["node_id"], c["change"]] for c in data["code_changes"]]
        )
    lines += _environment(data.get("environment") or {}, h)
    return "\n".join(lines) + "\n"


def _environment(env: dict[str, Any], h: str) -> list[str]:
    if not env or env.get("same"):
        return []
    rows: list[list[Any]] = []
    for section in ("python", "os", "hardware"):
        for key, change in (env.get(section) or {}).items():
            rows.append([f"{section}.{key}", change["a"], change["b"]])
    packages = env.get("packages") or {}
    for name, change in (packages.get("changed") or {}).items():
        rows.append([name, change["a"], change["b"]])
    for name, version in (packages.get("added") or {}).items():
        rows.append([name, None, version])
    for name, version in (packages.get("removed") or {}).items():
        rows.append([name, version, None])
    if not rows:
        return []
    return [
        "",
        f"{h}# Environment differences that may explain it",
        "",
        *_table(["what", "recorded", "now"], rows),
    ]


def check_markdown(data: dict[str, Any]) -> str:
    """Render a gate report (``CheckReport.to_dict()``) as Markdown."""
    outcome = "PASSED" if data["passed"] else "FAILED"
    lines = [
        f"## pipetrail check: {outcome}",
        "",
        f"Pipeline `{data['pipeline']}`, run `{data['run_id']}`, seed {data['seed']}.",
        "",
    ]
    contracts = data.get("contracts") or {}
    reproduction = data.get("reproduction")
    baseline = data.get("baseline")
    rows: list[list[Any]] = [["run", data["run_status"]]]
    if contracts.get("checks"):
        failed = contracts.get("failed", 0)
        total = contracts["checks"]
        text = f"{total} checks, all passed" if not failed else f"**{failed} of {total} failed**"
        rows.append(["contracts", text])
    elif contracts:
        rows.append(["contracts", "none declared"])
    if reproduction is not None:
        rows.append(["reproduction", f"{reproduction['verdict']}: {reproduction['why']}"])
    if baseline is not None:
        rows.append(
            [
                f"baseline `{baseline['baseline_run_id']}`",
                f"{baseline['verdict']}: {baseline['why']}",
            ]
        )
    drift = data.get("drift")
    if drift is not None:
        verdict = "**drifts**" if drift["drifted"] else "no drift above the thresholds"
        gated = "" if drift["gate"] else " (reported, not gated)"
        rows.append(["data drift", f"{verdict}{gated}"])
    if data.get("seeds"):
        rows.append(["seeds", f"{len(data['seeds']) + 1} runs (spread below)"])
    lines += _table(["check", "result"], rows)
    if data["failures"]:
        lines += ["", "### Why it failed", ""]
        lines += [f"- {failure}" for failure in data["failures"]]
    failing = contracts.get("failing") or []
    if failing:
        lines += ["", "### Failed contract checks", ""]
        lines += _table(
            ["step", "boundary", "check", "column", "failures", "detail"],
            [
                [
                    f.get("step"),
                    f.get("boundary"),
                    f.get("check"),
                    f.get("column"),
                    f.get("failures"),
                    f.get("message") or _examples(f.get("examples")),
                ]
                for f in failing
            ],
        )
    if data.get("spread"):
        lines += ["", "### Metrics over seeds", ""]
        lines += _table(
            ["metric", "mean", "std", "min", "max", "runs"],
            [
                [s["name"], s["mean"], s["stdev"], s["minimum"], s["maximum"], len(s["values"])]
                for s in data["spread"]
            ],
        )
    if drift is not None and drift["origins"]:
        pooled = ", ".join(f"`{r}`" for r in drift["baseline_runs"])
        lines += ["", f"### Data drift from {pooled}", ""]
        lines += _table(
            ["starts at step", "output", "columns", "carried to"],
            [
                [o["step"], o["output"], ", ".join(o["columns"]), ", ".join(o["downstream"])]
                for o in drift["origins"]
            ],
        )
    changed_params = (baseline or {}).get("params") or []
    if baseline is not None and changed_params:
        lines += ["", f"### Params that differ from baseline `{baseline['baseline_run_id']}`", ""]
        lines += _table(
            ["param", "baseline", "current"],
            [[p["name"], _param(p, "baseline"), _param(p, "current")] for p in changed_params],
        )
    if reproduction is not None and not reproduction["ok"]:
        lines += ["", reproduction_markdown(reproduction, level=3).rstrip()]
    if baseline is not None and not baseline["ok"]:
        text = reproduction_markdown(baseline, level=3).rstrip()
        lines += ["", text.replace("Reproduction of run", "Comparison with baseline run", 1)]
    return "\n".join(lines) + "\n"
