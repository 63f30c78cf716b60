"""Getting recorded things back out of the store: an artifact's bytes, a step's captured log.

:func:`resolve_output` turns what a user typed into the artifact it names: a digest or a
unique prefix, or ``RUN:STEP[.OUTPUT]`` (a run ref as ``pipetrail show`` takes it, then a
node id or step name, then an output name when the step has several). The artifact's
record (which stored object holds its bytes) comes from its verified event
(:meth:`~pipetrail.ledger.queries.Reader.artifact`), and the bytes are checked against
their digest as they are read (the store's verified read path), so what comes out is what
was recorded or an error naming the artifact.

:func:`step_logs` returns the captured stdout, stderr and logging output of a run's
steps, as text and as structured lines (see :mod:`pipetrail.capture.log_lines`); a step
served from the cache has no log of its own, so its entry names the step run it reused
and carries that one's log. :func:`follow_logs` yields them as the step runs of a
running run end.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipetrail.errors import AmbiguousPrefixError, NotFoundError
from pipetrail.ledger.retention_reads import run_purge

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import BinaryIO

    from pipetrail.execution.project import Project
    from pipetrail.ledger import Reader
    from pipetrail.store import ContentStore, StoredArtifact

__all__ = [
    "OutputRef",
    "StepLog",
    "follow_logs",
    "open_output",
    "resolve_output",
    "step_log",
    "step_logs",
]


@dataclass(frozen=True)
class OutputRef:
    """An artifact named by a ref, and the step output it is when the ref named one.

    ``blob`` is the stored object holding its bytes (for most formats the digest itself).
    ``sealed``: a sensitive artifact, stored encrypted (read through the project's keys).
    ``purged``: when the run it came from was purged by a retention policy, what the
    tombstone says (the policy and the date).
    """

    digest: str
    blob: str
    serializer: str
    size: int | None
    run_id: str | None = None
    node_id: str | None = None
    output: str | None = None
    sealed: bool = False
    purged: str | None = None

    @property
    def suggested_name(self) -> str:
        """A file name: ``NODE.OUTPUT`` (or the digest) plus its serializer's suffix."""
        stem = (
            f"{self.node_id}.{self.output}"
            if self.node_id and self.output
            else self.digest.removeprefix("blake3:")[:16]
        )
        stem = "".join(c if c.isalnum() or c in "-_.=" else "_" for c in stem)
        return stem + _SUFFIXES.get(self.serializer.split("@")[0], "")


@dataclass(frozen=True)
class StepLog:
    """The captured log of one step run of a run (``""`` and no lines when it wrote nothing).

    Attributes:
        node_id: the step's node id.
        step_run_id: the step run.
        status: its status.
        text: the log as text (``[stdout] ...`` lines).
        reused_step_run_id: the step run whose log a cache hit shows.
        lines: the log's structured lines (see :mod:`pipetrail.capture.log_lines`); a
            log stored before lines were structured gets the ids its record gives.
    """

    node_id: str
    step_run_id: str
    status: str
    text: str
    reused_step_run_id: str | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)


# Serializer name (before any ``@version``) -> the file suffix its bytes usually carry.
_SUFFIXES = {
    "json": ".json",
    "parquet": ".parquet",
    "npy": ".npy",
    "skops": ".skops",
    "pickle": ".pkl",
    "bytes": "",
}


def resolve_output(reader: Reader, ref: str) -> OutputRef:
    """Resolve a digest (or unique prefix) or ``RUN:STEP[.OUTPUT]`` to an artifact.

    Raises:
        NotFoundError: nothing matches; the message lists what does exist (runs' steps,
            a step's outputs).
        AmbiguousPrefixError: a prefix or a step name matches several; the message names them.
    """
    text = ref.strip()
    if not text:
        raise NotFoundError("an empty ref names no artifact; give a digest or RUN:STEP[.OUTPUT]")
    if ":" in text and not text.lower().startswith("blake3:"):
        return _step_output(reader, text)
    digest = reader.resolve_artifact(text)
    return _record(reader, digest, ref)


def _record(reader: Reader, digest: str, ref: str, **where: Any) -> OutputRef:
    row = reader.artifact(digest)
    if row is None:
        raise NotFoundError(f"{ref!r} names no recorded artifact ({digest})")
    size = row.get("size")
    return OutputRef(
        digest=digest,
        blob=str(row.get("blob") or digest),
        serializer=str(row.get("serializer") or "bytes"),
        size=int(size) if size is not None else None,
        sealed=bool((row.get("meta") or {}).get("sealed")),
        **where,
    )


def _step_output(reader: Reader, ref: str) -> OutputRef:
    run_part, _, step_part = ref.partition(":")
    if not run_part or not step_part:
        raise NotFoundError(
            f"{ref!r} is not RUN:STEP[.OUTPUT]: both the run and the step are needed "
            "(for example latest:train.model)"
        )
    run_id = reader.resolve_run(run_part)
    outputs = {row["node_id"]: row for row in reader.step_outputs(run_id)}
    node, output = _split_node(step_part, outputs, reader, run_id)
    found = outputs.get(node)
    if found is None:
        step = reader.find_step_run(run_id, node)  # names the steps when there is none
        raise NotFoundError(
            f"step {step['node_id']!r} of run {run_id} has no outputs to get: it ended "
            f"{step['status']}; outputs exist only for completed or cached steps"
        )
    names: dict[str, str] = found["outputs"]
    if output is None:
        if len(names) != 1:
            listed = ", ".join(sorted(names)) or "none"
            raise AmbiguousPrefixError(
                f"step {node!r} of run {run_id} has {len(names)} outputs ({listed}); "
                f"name one: {run_part}:{node}.OUTPUT"
            )
        (output,) = names
    if output not in names:
        listed = ", ".join(sorted(names)) or "none"
        raise NotFoundError(
            f"step {node!r} of run {run_id} has no output {output!r}; its outputs are: {listed}"
        )
    tombstone = run_purge(reader, run_id)
    if tombstone is not None and "step_outputs" not in tombstone.get("content", ["step_outputs"]):
        tombstone = None  # only the run's source copies went
    whose = (
        f"the step outputs of run {run_id} were"
        if tombstone and "content" in tombstone
        else f"run {run_id} was"
    )
    purged = (
        None
        if tombstone is None
        else f"{whose} purged by policy {tombstone['policy']} on "
        f"{tombstone['purged_at']} (ledger event {tombstone['seq']})"
    )
    return _record(
        reader, names[output], ref, run_id=run_id, node_id=node, output=output, purged=purged
    )


def _split_node(
    text: str, outputs: dict[str, Any], reader: Reader, run_id: str
) -> tuple[str, str | None]:
    """Split ``STEP[.OUTPUT]``; a node id that itself holds a dot wins over a split."""
    if text in outputs:
        return text, None
    head, dot, tail = text.rpartition(".")
    if dot and head in outputs:
        return head, tail
    missing: NotFoundError | None = None
    for name, output in ((text, None), (head, tail)) if dot else ((text, None),):
        try:
            return str(reader.find_step_run(run_id, name)["node_id"]), output
        except AmbiguousPrefixError:
            raise
        except NotFoundError as exc:
            missing = missing or exc
    raise missing or NotFoundError(f"run {run_id} has no step {text!r}")


def open_output(store: ContentStore, found: OutputRef) -> BinaryIO:
    """Open the stored bytes of ``found`` for reading, once they hash to their digest.

    Raises:
        NotFoundError: the store does not hold them (collected, or never copied here).
        IntegrityError: they are corrupt (now quarantined).
    """
    try:
        return store.open(found.blob)
    except NotFoundError as exc:
        if found.purged:
            raise NotFoundError(
                f"the bytes of artifact {found.digest} were removed on purpose: {found.purged}"
                "; no kept run needed them"
            ) from exc
        raise NotFoundError(
            f"the bytes of artifact {found.digest} (stored object {found.blob}) are not in "
            "this project's store; run `pipetrail store verify` to list what is missing"
        ) from exc


def step_logs(
    reader: Reader,
    store: ContentStore,
    run_id: str,
    step: str | None,
    *,
    store_for: Callable[[StoredArtifact], ContentStore] | None = None,
) -> list[StepLog]:
    """Return the captured logs of a run's steps (all of them, or one node or step).

    The logs of a step that handled sensitive data are sealed, under a keyed digest that
    names no stored object: ``store_for`` (``Project.store_for``) gives the store that
    decrypts them.

    Raises:
        NotFoundError: the run has no such step, or a log's bytes are missing.
        AmbiguousPrefixError: ``step`` names a step that ran several times.
        IntegrityError: a log's bytes are corrupt (now quarantined).
    """
    rows = reader.step_runs(run_id)
    if step is not None:
        wanted = reader.find_step_run(run_id, step)["step_run_id"]
        rows = [row for row in rows if row["step_run_id"] == wanted]
    return [step_log(reader, store, row, store_for=store_for) for row in rows]


def step_log(
    reader: Reader,
    store: ContentStore,
    row: dict[str, Any],
    *,
    store_for: Callable[[StoredArtifact], ContentStore] | None = None,
) -> StepLog:
    """Return the captured log of one step run (a row of :meth:`Reader.step_runs`).

    ``store_for`` (``Project.store_for``) decrypts the sealed log of a step that handled
    sensitive data.

    Raises:
        NotFoundError: the log's bytes are missing.
        IntegrityError: the log's bytes are corrupt (now quarantined).
    """
    from pipetrail.capture.log_context import step_span_id, trace_id_for
    from pipetrail.capture.log_lines import decode_log, render_text

    digest = row.get("logs")
    reused = row.get("reused_step_run_id")
    origin = row
    if digest is None and reused:
        origin = reader.step_run(str(reused))
        digest = origin.get("logs")
    data = _log_bytes(reader, store, str(digest), store_for) if digest else b""
    lines = decode_log(data)
    if lines and "run_id" not in lines[0]:
        # Stored before lines carried their ids: those of the step run that wrote them.
        origin_run = str(origin["run_id"])
        record = reader.get_run(origin_run).get("record")
        traced = isinstance(record, dict) and record.get("trace_id") is not None
        ids = {
            "run_id": origin_run,
            "step": str(origin["node_id"]),
            "step_run_id": str(origin["step_run_id"]),
            "trace_id": trace_id_for(origin_run) if traced else None,
            "span_id": step_span_id(str(origin["step_run_id"])) if traced else None,
        }
        lines = [{**line, **ids} for line in lines]
    return StepLog(
        node_id=str(row["node_id"]),
        step_run_id=str(row["step_run_id"]),
        status=str(row["status"]),
        text=render_text(data),
        reused_step_run_id=str(reused) if reused else None,
        lines=lines,
    )


def _log_bytes(
    reader: Reader,
    store: ContentStore,
    digest: str,
    store_for: Callable[[StoredArtifact], ContentStore] | None,
) -> bytes:
    try:
        return store.get_bytes(digest)
    except NotFoundError:
        row = reader.artifact(digest)
        if row is None or not (row.get("meta") or {}).get("sealed"):
            raise
    from pipetrail.store.serializers.base import StoredArtifact as Record

    record = Record.from_dict(dict(row))
    if store_for is None:
        raise NotFoundError(
            f"the logs {digest} are sensitive (encrypted); read them through the project"
        )
    return store_for(record).get_bytes(record.blob)


def _status(row: dict[str, Any]) -> str:
    from pipetrail.execution.crash import effective_status

    return effective_status(row)


def _wanted_node(project: Project, run_id: str, step: str | None) -> Callable[[Any], bool]:
    """Which step runs to follow: all, or those of one node (by node id or step name)."""
    if step is None:
        return lambda _row: True
    record = project.reader().get_run(run_id).get("record") or {}
    nodes = record.get("nodes") or {} if isinstance(record, dict) else {}
    steps = {str(info.get("step")) for info in nodes.values() if isinstance(info, dict)}
    if nodes and step not in nodes and step not in steps:
        raise NotFoundError(
            f"run {run_id} has no step {step!r}; its steps are {', '.join(sorted(nodes))}"
        )
    return lambda row: row["node_id"] == step or row["step"] == step


def follow_logs(
    project: Project,
    run_id: str,
    step: str | None = None,
    *,
    poll: float = 0.25,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[StepLog]:
    """Yield the log of each step run of a run as it ends, until the run has ended.

    Step runs already ended come first, in the order they started; then each one as it
    ends. A run whose process is gone without recording its end (crashed) has ended.

    Args:
        project: the run's project.
        run_id: the run (full id).
        step: only the step runs of this node id or step name.
        poll: seconds between looks at the ledger.
        sleep: how to wait (tests pass their own).

    Raises:
        NotFoundError: the run has no such step.
    """
    wanted = _wanted_node(project, run_id, step)
    shown: set[str] = set()
    while True:
        reader = project.reader()
        status = _status(reader.get_run(run_id))
        for row in reader.step_runs(run_id):
            if row["step_run_id"] in shown or not wanted(row):
                continue
            if row["status"] == "running" and status == "running":
                continue  # still writing its log
            shown.add(row["step_run_id"])
            yield step_log(reader, project.store, row, store_for=project.store_for)
        if status != "running":
            return
        sleep(poll)
