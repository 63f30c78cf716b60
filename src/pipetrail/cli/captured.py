"""``pipetrail show --logs / --git-diff``: what a run captured, read back from the store.

A run records its captured output (one log per step run: stdout, stderr and logging
records, see :mod:`pipetrail.capture.output`) and the uncommitted changes of its git
working tree as blobs, named in the ledger by digest. :func:`read_captured` reads those
blobs through the content store's verified read (:meth:`~pipetrail.store.LocalStore.get_bytes`:
the bytes are hashed before they are handed out, a corrupt object is quarantined), and
:func:`print_captured` prints them. A blob that is missing or corrupt is reported as
such, by step and digest, never printed half.

A cached step did not run, so it captured nothing itself: its log is that of the step
run whose outputs it reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from pipetrail.errors import IntegrityError, NotFoundError, StoreError

if TYPE_CHECKING:
    from pipetrail.ledger import Reader
    from pipetrail.store import ContentStore

__all__ = ["Captured", "print_captured", "read_captured"]


@dataclass
class Captured:
    """One captured blob of a run: what it is, its digest, its text or why there is none.

    Attributes:
        label: ``logs of step NODE`` or ``git diff``.
        digest: the blob's digest (None when nothing was captured).
        text: the blob decoded as UTF-8 (undecodable bytes replaced), when it was read.
        error: why the blob could not be read (missing from the store, corrupt).
        note: where the blob came from, when not from the step run itself.
    """

    label: str
    digest: str | None
    text: str | None = None
    error: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form."""
        return {"digest": self.digest, "text": self.text, "error": self.error, "note": self.note}


def _read(store: ContentStore | None, item: Captured) -> Captured:
    if item.digest is None:
        return item
    if store is None:
        item.error = (
            f"the {item.label} ({item.digest}) cannot be read: the content store folder does "
            "not exist; check `artifacts` in pipetrail.toml (or PIPETRAIL_ARTIFACTS)"
        )
        return item
    try:
        data = store.get_bytes(item.digest)
    except NotFoundError:
        item.error = (
            f"the {item.label} ({item.digest}) is not in the content store although the "
            "ledger records it; `pipetrail store verify` checks the whole store"
        )
    except IntegrityError as exc:
        item.error = f"the {item.label} cannot be shown: {exc}"
    except StoreError as exc:
        item.error = f"the {item.label} ({item.digest}) could not be read: {exc}"
    else:
        from pipetrail.capture.log_lines import render_text

        # A step's log is stored as structured lines: shown as the text log reads.
        item.text = (
            render_text(data)
            if item.label.startswith("logs")
            else data.decode("utf-8", errors="replace")
        )
    return item


def read_captured(
    reader: Reader,
    store: ContentStore | None,
    summary: dict[str, Any],
    *,
    logs: bool,
    git_diff: bool,
) -> dict[str, Any]:
    """Read a run's captured logs and git diff from the store.

    Args:
        reader: the ledger (to find the log of the step run a cached step reused).
        store: the content store (None: its folder does not exist).
        summary: the run summary (:func:`pipetrail.execution.explain.run_summary`).
        logs: read each step run's captured output.
        git_diff: read the git diff recorded when the run started.

    Returns:
        ``{"logs": {node_id: Captured}, "git_diff": Captured}`` (only the parts asked for).
    """
    found: dict[str, Any] = {}
    if logs:
        per_step: dict[str, Captured] = {}
        for step in summary["steps"]:
            label = f"logs of step {step['node_id']}"
            digest, note = step["logs"], None
            reused = step.get("reused_step_run_id")
            if digest is None and reused:
                digest = reader.step_run(reused)["logs"]
                note = f"cached: captured by step run {reused}, whose outputs it reused"
            per_step[step["node_id"]] = _read(store, Captured(label, digest, note=note))
        found["logs"] = per_step
    if git_diff:
        git = summary.get("git") or {}
        found["git_diff"] = _read(store, Captured("git diff", git.get("diff_digest")))
    return found


def print_captured(summary: dict[str, Any], found: dict[str, Any]) -> list[str]:
    """Print what :func:`read_captured` found; return the errors (to print on stderr)."""
    errors: list[str] = []
    items: list[Captured] = list((found.get("logs") or {}).values())
    if "logs" in found and not items:
        click.echo("\nlogs: the run has no step runs")
    for item in items:
        click.echo(f"\n--- {item.label}" + (f" ({item.note})" if item.note else ""))
        if item.error:
            errors.append(item.error)
            click.echo("(could not be read; see the error below)")
        elif item.digest is None:
            click.echo("(nothing captured)")
        else:
            click.echo(item.text or "(empty)", nl=not (item.text or "").endswith("\n"))
    diff = found.get("git_diff")
    if diff is not None:
        git = summary.get("git")
        click.echo("\n--- git diff")
        if diff.error:
            errors.append(diff.error)
            click.echo("(could not be read; see the error below)")
        elif not git:
            click.echo("(the run was not made in a git working tree)")
        elif diff.digest is None:
            click.echo("(no uncommitted changes when the run started)")
        else:
            click.echo(diff.text or "", nl=not (diff.text or "").endswith("\n"))
    return errors
