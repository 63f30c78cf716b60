"""The human-readable report inside an audit bundle: ``report.md`` and ``report.html``.

Who did what, when, with which data, code and environment, and who approved it: the
runs in scope (pipeline, parameters, who ran it, when, how it ended, its code and
environment fingerprints), the data they read and produced, the content the bundle
carries or left out, every read of sensitive content, and every governance act (who
registered, requested, approved, rejected, moved an alias or recorded a decision).

Both documents are built from one list of sections, so they say the same. Every value
is user text (a pipeline's name, a parameter, a comment): the Markdown escapes what a
renderer would read as markup or HTML, and the HTML is self-contained (no script, no
external resource; a content security policy forbids both) with every value escaped.
The report is a reading aid: what the verdict rests on is the signed events, the proofs
and the checkpoint, which ``pipetrail audit verify-bundle`` checks.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipetrail.governance.checkpoint import Checkpoint
    from pipetrail.ledger.events import Event

__all__ = ["ReportInput", "html_report", "markdown_report", "reports"]

_SHOWN = ("model", "version", "alias", "request_id", "risk", "role", "user", "comment", "text")
_LISTED = 20  # sources and outputs listed per run; events.jsonl holds them all
_ENDS = ("run.completed", "run.failed", "run.crashed", "run.interrupted")


@dataclass
class ReportInput:
    """What the report is about.

    Attributes:
        scope: the bundle's scope (``kind``, ``name``, ``version``).
        checkpoint: the checkpoint the events are proven in.
        events: the bundle's events, in sequence order.
        statuses: run id -> how it ended.
        not_attested: run id -> why it has no attestation.
        data: member name -> what it holds (``artifacts``, ``label``, ``sealed``...),
            when the bundle carries content.
        left_out: the artifacts whose content was left out, and why.
    """

    scope: dict[str, Any]
    checkpoint: Checkpoint
    events: list[Event]
    statuses: dict[str, str]
    not_attested: dict[str, str]
    data: dict[str, dict[str, Any]] | None = None
    left_out: list[dict[str, str]] = field(default_factory=list)


@dataclass
class _Section:
    title: str
    text: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


def _content(event: Event) -> dict[str, Any]:
    try:
        value = json.loads(event.payload_text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _title(scope: dict[str, Any]) -> str:
    what = f"model {scope['name']}" if scope["kind"] == "model" else f"run {scope['name']}"
    return what + (f" version {scope['version']}" if scope.get("version") else "")


Parsed = list[tuple["Event", dict[str, Any] | None]]


def _runs(given: ReportInput, parsed: Parsed) -> list[_Section]:
    ended = {e.run_id: e.ts for e, _ in parsed if e.kind in _ENDS}
    runs = _Section(
        "Runs: who ran what, when, with which code and environment",
        header=["run", "pipeline", "parameters", "by", "started", "ended", "status",
                "code", "environment", "attested"],
    )  # fmt: skip
    data = _Section(
        "Data each run read and produced",
        header=["run", "what", "name", "digest", "label"],
    )
    read: dict[str, list[tuple[str, str, str] | None]] = {}
    made: dict[str, list[tuple[str, str, str]]] = {}
    for event, p in parsed:
        run = event.run_id or ""
        if p is None:  # a source beyond those listed: counted, not parsed
            read.setdefault(run, []).append(None)
            continue
        if event.kind == "run.started":
            git = p.get("git") or {}
            code = [f"pipeline {p.get('pipeline_fingerprint', '?')}"]
            if git.get("commit"):
                code.append(
                    f"git {git['commit']}" + (" (uncommitted changes)" if git.get("dirty") else "")
                )
            attested = "no: " + given.not_attested[run] if run in given.not_attested else "yes"
            params = ", ".join(
                f"{k}={json.dumps(v)}" for k, v in sorted((p.get("params") or {}).items())
            )
            runs.rows.append([
                run, str(p.get("pipeline", "?")), params, str(p.get("owner") or event.actor),
                event.ts,
                ended.get(run, ""), given.statuses.get(run, "?"), "; ".join(code),
                str(p.get("environment") or ""), attested,
            ])  # fmt: skip
        elif event.kind == "source.observed":
            label = str(p.get("classification") or "")
            read.setdefault(run, []).append((str(p.get("path")), str(p.get("digest")), label))
        elif event.kind == "artifact.recorded":
            meta = p["meta"] if isinstance(p.get("meta"), dict) else {}
            label = str(meta.get("classification") or "")
            name = f"{p.get('role', '')} {p.get('type_name', '')}".strip()
            made.setdefault(run, []).append((name, str(p.get("digest")), label))
    for run in sorted(set(read) | set(made)):
        for what, items in (("read", read.get(run, [])), ("recorded", made.get(run, []))):
            data.rows.extend([run, what, *item] for item in items[:_LISTED] if item)
            if len(items) > _LISTED:
                more = f"and {len(items) - _LISTED} more (events.jsonl lists every one)"
                data.rows.append([run, what, more, "", ""])
    return [runs, data]


def _data(given: ReportInput) -> list[_Section]:
    if given.data is None:
        return []
    held = _Section(
        "Content in this bundle",
        ["Each member's SHA-256 is in the signed manifest; verify-bundle checks a plain "
         "object against the BLAKE3 digest the ledger records, and sealed (sensitive) "
         "content against the digest the signed manifest states."],
        ["member", "artifacts", "file", "label", "sealed"],
    )  # fmt: skip
    for member, entry in sorted(given.data.items()):
        held.rows.append([
            member, ", ".join(entry.get("artifacts") or []), str(entry.get("path") or ""),
            str(entry.get("label") or ""), "yes" if entry.get("sealed") else "no",
        ])  # fmt: skip
    out = [held]
    if given.left_out:
        left = _Section("Content left out", header=["artifact", "label", "why"])
        left.rows = [[e["artifact"], e["label"], e["reason"]] for e in given.left_out]
        out.append(left)
    return out


def _sections(given: ReportInput) -> list[_Section]:
    cp = given.checkpoint
    intro = _Section(
        "About this bundle",
        [
            f"Ledger {cp.origin}: checkpoint of {cp.size} events at {cp.time}. "
            f"{len(given.events)} events in this bundle, each with its proof of inclusion "
            "in that checkpoint.",
            "Verify with `pipetrail audit verify-bundle THIS.tar --key NAME=ed25519:KEY` "
            "(the keys you trust, obtained apart from this file).",
        ],
    )
    parsed: Parsed = []
    sources: dict[str | None, int] = {}
    for event in given.events:  # a run may read 10,000 files: only those listed are parsed
        if event.kind == "source.observed":
            sources[event.run_id] = sources.get(event.run_id, 0) + 1
            if sources[event.run_id] > _LISTED:
                parsed.append((event, None))
                continue
        parsed.append((event, _content(event)))
    reads = _Section(
        "Reads of sensitive content",
        header=["event", "time", "user", "artifact", "label", "action", "allowed by", "purpose"],
    )
    acts = _Section(
        "Governance: who registered, requested, approved, rejected, decided",
        header=["event", "time", "act", "by", "about"],
    )
    for event, p in parsed:
        if p is None:
            continue
        if event.kind in ("access.read", "access.refused"):
            allowed = p.get("basis") or f"refused: {p.get('reason', '')}"
            reads.rows.append([
                str(event.seq), event.ts, str(p.get("user")), str(p.get("digest")),
                str(p.get("label")), str(p.get("action")), str(allowed),
                str(p.get("purpose") or ""),
            ])  # fmt: skip
        elif "signature" in p:
            about = ", ".join(f"{k} {p[k]}" for k in _SHOWN if p.get(k) not in (None, ""))
            acts.rows.append([str(event.seq), event.ts, event.kind, str(p.get("by")), about])
    return [intro, *_runs(given, parsed), *_data(given), reads, acts]


def _md(value: str) -> str:
    """A table cell: no line breaks, no table or HTML markup."""
    text = html.escape(value, quote=False).replace("|", "\\|")
    return " ".join(text.split("\n"))


def reports(given: ReportInput) -> tuple[str, str]:
    """The report in Markdown and in HTML (the facts gathered once for both)."""
    sections = _sections(given)
    return _markdown(given, sections), _html(given, sections)


def markdown_report(given: ReportInput) -> str:
    """The report's Markdown text."""
    return _markdown(given, _sections(given))


def html_report(given: ReportInput) -> str:
    """The report as one self-contained HTML page (every value escaped)."""
    return _html(given, _sections(given))


def _markdown(given: ReportInput, sections: list[_Section]) -> str:
    lines = [f"# Audit bundle: {_md(_title(given.scope))}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for paragraph in section.text:
            lines += [paragraph, ""]
        if section.header:
            if not section.rows:
                lines += ["None.", ""]
                continue
            lines.append("| " + " | ".join(section.header) + " |")
            lines.append("|" + " --- |" * len(section.header))
            lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in section.rows]
            lines.append("")
    return "\n".join(lines)


_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin-bottom:1.5em}"
    "th,td{border:1px solid #bbb;padding:.3em .5em;text-align:left;vertical-align:top;"
    "font-size:.9em}td{overflow-wrap:anywhere}th{background:#eee;white-space:nowrap}"
)


def _html(given: ReportInput, sections: list[_Section]) -> str:
    esc = html.escape
    title = esc(f"Audit bundle: {_title(given.scope)}")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'\">",
        f"<title>{title}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{title}</h1>",
    ]
    for section in sections:
        parts.append(f"<h2>{esc(section.title)}</h2>")
        parts += [f"<p>{esc(paragraph)}</p>" for paragraph in section.text]
        if section.header and not section.rows:
            parts.append("<p>None.</p>")
        elif section.header:
            parts.append("<table><thead><tr>")
            parts += [f"<th>{esc(cell)}</th>" for cell in section.header]
            parts.append("</tr></thead><tbody>")
            for row in section.rows:
                parts.append("<tr>" + "".join(f"<td>{esc(cell)}</td>" for cell in row) + "</tr>")
            parts.append("</tbody></table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
