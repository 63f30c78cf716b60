"""Loading a step's inputs, and recomputing one whose stored object turns out corrupt.

The cache decides on existence only: a hit's outputs are not hashed on every run (that
would cost a read of every cached output). Corruption is found where bytes are read, by
the store (ADR 0011): a load raises :class:`~pipetrail.errors.IntegrityError`, and the
store has moved the object to its quarantine. :func:`load_inputs` then asks the runner to
execute the node that produced the artifact again, without the cache (its step event
says why), and loads again. An input that cannot be recomputed that way fails the run
with an error naming the step, the artifact and its digest. Every node feeding a step is
a node of the same run, so "cannot" means the corrupt object is not one of them (say, a
file inside a stored folder that could not be traced) or stayed corrupt after its
producer ran again.

Any other failure to turn an input's stored artifact into a value (the serializer or a
library it uses raised on intact bytes, the artifact's format version is newer than the
serializer reads) is a :class:`~pipetrail.errors.LoadError` naming the step, the input,
the artifact and a fix; the runner records the run as failed.

A cache hit is read too: its event carries each metric series' summary, read from the
series object when the artifact's record has none (:func:`hit_metrics`). A series found
corrupt there turns the hit into a miss: the step executes again, which stores the series
anew, and its event says why.

Imports only ``pipetrail.core``, ``pipetrail.errors`` and ``pipetrail.execution``'s
``cache``, ``records``, ``run_events`` and ``run_state``.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from pipetrail.core.graph import OutputRef, iter_refs
from pipetrail.errors import (
    IntegrityError,
    LoadError,
    NotFoundError,
    PipetrailError,
    SerializationError,
)
from pipetrail.execution.cache import CacheDecision
from pipetrail.execution.records import split_recorded
from pipetrail.execution.run_events import series_summary

if TYPE_CHECKING:
    from collections.abc import Callable

    from pipetrail.core.graph import Node
    from pipetrail.execution.run_state import RunState

__all__ = ["hit_metrics", "load_inputs"]

_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def load_inputs(
    state: RunState,
    node: Node,
    load: Callable[[Any], Any],
    rerun: Callable[[Node, str], None],
) -> tuple[dict[str, Any], bool]:
    """Load ``node``'s inputs; recompute those found corrupt from their producing nodes.

    Args:
        state: the run.
        node: the node about to execute.
        load: turns one input (an :class:`OutputRef`, a source, a literal, or a list,
            tuple or dict of them) into its value.
        rerun: executes a node again without the cache, with the reason to record.

    Returns:
        The keyword arguments, and whether a producer ran again (its outputs, so this
        node's cache key, may then differ from what was computed before loading).

    Raises:
        IntegrityError: a corrupt input could not be recomputed (names the step, the
            artifact and its digest).
        LoadError: an input's bytes are intact but could not be turned into a value (the
            serializer or a library it uses raised, the format version is newer than the
            serializer reads); names the step, the input, the artifact and a fix.
        StepFailedError: a producer failed when it ran again.
    """
    rerun_nodes: set[str] = set()
    while True:
        try:
            return _load_all(state, node, load), bool(rerun_nodes)
        except IntegrityError as exc:
            corrupt = _corrupt_refs(state, node, load)
            again = [ref for ref in corrupt if ref.node_id not in rerun_nodes]
            if not again:
                raise _unrecoverable(state, node, corrupt, exc) from exc
            for ref in again:
                rerun_nodes.add(ref.node_id)
                digest = state.outputs[ref.node_id][ref.index].digest
                rerun(
                    state.graph.nodes[ref.node_id],
                    f"its output {ref.name!r} ({digest}) was corrupt in the store "
                    f"(quarantined) when step {node.id!r} read it; executing again",
                )


def hit_metrics(state: RunState, decision: CacheDecision) -> tuple[CacheDecision, dict[str, Any]]:
    """The ``metrics`` of a hit's ``step.cached`` event; a miss if a series is corrupt.

    Args:
        state: the run.
        decision: a hit, with its outputs (``metric:NAME`` entries are the series).

    Returns:
        ``decision`` and metric name -> ``{"digest", "count", "min", "max", "last"}``;
        or, when reading a series found it corrupt (the store quarantined it), a miss
        naming the series, and no metrics: the step must execute again.
    """
    metrics: dict[str, Any] = {}
    for name, digest in split_recorded(decision.outputs or {})[0].items():
        try:
            metrics[name] = {"digest": digest, **series_summary(state, digest)}
        except IntegrityError:
            reason = (
                f"the cached metric series {name!r} ({digest}) was corrupt in the store "
                "(quarantined) when the hit was read; executing again"
            )
            return CacheDecision("miss", reason), {}
    return decision, metrics


def _load_all(state: RunState, node: Node, load: Callable[[Any], Any]) -> dict[str, Any]:
    """Load every input of ``node``; a failure other than ours becomes a LoadError.

    Errors of the store and the ledger (corrupt or missing objects, I/O) pass unchanged:
    they name the object and say what to do already, and corrupt ones are recomputed.
    """
    kwargs: dict[str, Any] = {}
    for name, value in node.inputs.items():
        try:
            kwargs[name] = load(value)
        except SerializationError as exc:
            raise _load_error(state, node, name, value, load, exc) from exc
        except PipetrailError:
            raise
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                raise  # one line naming the folder, exit 4 (cli.exits.disk_full_message)
            raise _load_error(state, node, name, value, load, exc) from exc
        except Exception as exc:
            raise _load_error(state, node, name, value, load, exc) from exc
    return kwargs


def _load_error(
    state: RunState,
    node: Node,
    name: str,
    value: Any,
    load: Callable[[Any], Any],
    exc: Exception,
) -> LoadError:
    """Describe a failed load of input ``name``, naming the artifact that failed."""
    failing = None
    refs = list(iter_refs(value))
    for ref in refs:
        if len(refs) == 1:
            failing = ref
            break
        try:  # several artifacts in one input (a list or dict of outputs): which one?
            load(ref)
        except Exception:  # noqa: BLE001 - any failure names this one as the culprit
            failing = ref
            break
    digest = None
    what = f"input {name!r}"
    if failing is not None:
        digest = state.outputs[failing.node_id][failing.index].digest
        what += f" (output {failing.name!r} of step {failing.node_id!r}, artifact {digest})"
    if isinstance(exc, SerializationError):
        why = str(exc)  # says which serializer failed, how, and what to do
    elif isinstance(exc, OSError):
        why = (
            f"{type(exc).__name__}: {exc}; give the current user access to the file or "
            "folder named, then run again"
        )
    else:
        why = (
            f"{type(exc).__name__}: {exc}; run `pipetrail audit verify` and `pipetrail "
            "store verify` to check the artifact's record and its stored object, then run "
            "again"
        )
    return LoadError(
        f"step {node.id!r} of run {state.run_id} cannot load its {what}: " + " ".join(why.split()),
        step=node.id,
        run_id=state.run_id,
        input_name=name,
        digest=digest,
    )


def _blob(state: RunState, ref: OutputRef) -> str | None:
    """The object holding the artifact ``ref`` stands for (None if it is not recorded)."""
    output = state.outputs[ref.node_id][ref.index]
    if output.record is not None:
        return output.record.blob
    record = state.project.ledger.reader().artifact(output.digest)
    return None if record is None else str(record["blob"])


def _corrupt_refs(state: RunState, node: Node, load: Callable[[Any], Any]) -> list[OutputRef]:
    """The inputs of ``node`` whose objects a read just found corrupt (and quarantined).

    The store removed the object it found corrupt, so first look for a blob that is gone;
    when none is (a file inside a stored folder, say), load each input alone.
    """
    refs = list(dict.fromkeys(ref for value in node.inputs.values() for ref in iter_refs(value)))
    store = state.project.store
    gone = [ref for ref in refs if not store.exists(_blob(state, ref) or "")]
    if gone:
        return gone
    failing = []
    for ref in refs:
        try:
            load(ref)
        except (IntegrityError, NotFoundError):
            failing.append(ref)
    return failing


def _unrecoverable(
    state: RunState, node: Node, corrupt: list[OutputRef], exc: IntegrityError
) -> IntegrityError:
    if corrupt:
        named = ", ".join(
            f"{ref.name!r} of step {ref.node_id!r} (artifact "
            f"{state.outputs[ref.node_id][ref.index].digest})"
            for ref in corrupt
        )
        why = f"the output {named} was still corrupt after that step executed again"
    else:
        why = "the corrupt object is not the output of a step of this run"
    return IntegrityError(
        f"step {node.id!r} of run {state.run_id} cannot read its inputs: {exc} "
        f"It cannot be recomputed: {why}. Run `pipetrail store verify`, then restore the "
        "store from a backup or run the pipeline again with --no-cache."
    )
