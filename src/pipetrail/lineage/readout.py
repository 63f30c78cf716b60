"""Getting recorded things back out of the store: an artifact's bytes, a step's captured log.

:func:`resolve_output` turns what a user typed into the artifact it names: a digest or a
unique prefix, or ``RUN:STEP[.OUTPUT]`` (a run ref as ``pipetrail show`` takes it, then a
node id or step name, then an output name when the step has several). The artifact's
record (which stored object holds its bytes) comes from its verified event
(:meth:`~pipetrail.ledger.queries.Reader.artifact`), and the bytes are checked against
their digest as they are read (the store's verified read path), so what comes out is what
was recorded or an error naming the artifact.

:func:`step_logs` returns the captured stdout, stderr and logging text of a run's steps;
a step served from the cache has no log of its own, so its entry names the step run it
reused and carries that one's log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.errors import AmbiguousPrefixError, NotFoundError

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import BinaryIO

    from pipetrail.ledger import Reader
    from pipetrail.store import ContentStore, StoredArtifact

__all__ = ["OutputRef", "StepLog", "open_output", "resolve_output", "step_logs"]


@dataclass(frozen=True)
class OutputRef:
    """An artifact named by a ref, and the step output it is when the ref named one.

    ``blob`` is the stored object holding its bytes (for most formats the digest itself).
    ``sealed``: a sensitive artifact, stored encrypted (read through the project's keys).
    """

    digest: str
    blob: str
    serializer: str
    size: int | None
    run_id: str | None = None
    node_id: str | None = None
    output: str | None = None
    sealed: bool = False

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
    """The captured log text of one step run of a run (``""`` when it wrote nothing)."""

    node_id: str
    step_run_id: str
    status: str
    text: str
    reused_step_run_id: str | None = None


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
    return _record(reader, names[output], ref, run_id=run_id, node_id=node, output=output)


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
    found = []
    for row in rows:
        digest = row.get("logs")
        reused = row.get("reused_step_run_id")
        if digest is None and reused:
            digest = reader.step_run(str(reused)).get("logs")
        text = _log_text(reader, store, str(digest), store_for) if digest else ""
        found.append(
            StepLog(
                node_id=str(row["node_id"]),
                step_run_id=str(row["step_run_id"]),
                status=str(row["status"]),
                text=text,
                reused_step_run_id=str(reused) if reused else None,
            )
        )
    return found


def _log_text(
    reader: Reader,
    store: ContentStore,
    digest: str,
    store_for: Callable[[StoredArtifact], ContentStore] | None,
) -> str:
    try:
        return store.get_bytes(digest).decode("utf-8", "replace")
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
    return store_for(record).get_bytes(record.blob).decode("utf-8", "replace")
