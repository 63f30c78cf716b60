"""Sending step tasks to worker processes and their results back.

A worker (a local process or a Dask worker, possibly on another machine) gets two
things: a :class:`WorkerContext`, the same for every task of a run (how to open the
store, the coordinator's ``sys.path``, and the source text of the pipeline's own
modules), and a task encoded by :func:`encode_task`. :func:`run_shipped` is the one
function workers call: it loads the context once per process, decodes the task, runs
:func:`~pipetrail.execution.task.execute_task` with the worker's own store, commits the
small objects it wrote, and returns the encoded :class:`TaskResult`.

Step functions travel by reference: the ``@step`` wrapper, not the plain function, is
what the pipeline module holds under the function's name, so :class:`_TaskPickler`
sends a step's function as "the function of the step at MODULE.QUALNAME". The pipeline's
modules are loaded on the worker from the source text the coordinator read, under the
same names, so a step's code is the code the coordinator fingerprinted, and the classes
of values defined in the pipeline file unpickle on both sides. Nothing here touches the
ledger.

Inputs travel by digest when they are large (at least :data:`SHIP_BY_DIGEST_BYTES`):
the coordinator puts a :class:`StoredInput` (the artifact's record) in the task instead
of the loaded value, and the worker loads it from its own store, verified as every read
is (ADR 0011), instead of the coordinator loading, pickling and sending the value. Small
inputs, sealed (sensitive) ones, which only the coordinator may decrypt and record the
read of, and files and folders (loaded as copies the coordinator owns) are loaded on the
coordinator and pickled with the task, as before. A worker finding such an input
corrupt fails the step with an :class:`~pipetrail.errors.IntegrityError` naming it
(its store quarantines the object, so the next run executes its producer again).

An exception a step raised comes back as itself when it survives pickling, else as a
:class:`~pipetrail.execution.task.ShippedError` with the same type name and message,
so the recorded error reads the same as on the inline executor.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import io
import os
import pickle
import socket
import sys
import threading
import traceback as traceback_module
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.errors import ExecutorError, IntegrityError
from pipetrail.execution.task import ShippedError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import ModuleType

    from pipetrail.execution.project import Project
    from pipetrail.execution.task import StepTask, TaskResult
    from pipetrail.store import ContentStore, SerializerRegistry, StoredArtifact

__all__ = [
    "SHIP_BY_DIGEST_BYTES",
    "ChainBroken",
    "ChainedInput",
    "StoredInput",
    "WorkerContext",
    "decode_result",
    "encode_result",
    "encode_task",
    "run_chained",
    "run_shipped",
    "ships_by_digest",
    "worker_context",
]

#: Stored objects at least this large are loaded by the worker, not sent as values.
SHIP_BY_DIGEST_BYTES = 1024 * 1024
# Loaded as copies in a folder the coordinator owns and removes: never by digest.
_COPIED_FORMATS = frozenset({"file", "folder"})


@dataclass(frozen=True)
class StoredInput:
    """An input a worker loads from the store itself (see the module docstring).

    Attributes:
        record: the stored artifact to load.
    """

    record: StoredArtifact


@dataclass(frozen=True)
class ChainedInput:
    """An input of a chained task: an output of an upstream task still running.

    Attributes:
        slot: which upstream result (the position in the list the task is given).
        name: the upstream step's output name.
    """

    slot: int
    name: str


class ChainBroken(ExecutorError):
    """A chained task did not run its step; the coordinator sends the step the usual way.

    Its upstream step failed or did not run, or one of its inputs is one only the
    coordinator may load (sealed, a file or a folder, or one that did not load).
    """


def ships_by_digest(record: StoredArtifact) -> bool:
    """Whether an input stored as ``record`` travels to a worker as its digest."""
    return (
        record.size >= SHIP_BY_DIGEST_BYTES
        and not record.meta.get("sealed")
        and record.serializer not in _COPIED_FORMATS
    )


@dataclass(frozen=True)
class WorkerContext:
    """What every worker needs to run the tasks of one run.

    Attributes:
        store: ``("local", ROOT)`` for a local folder store, or ``("config", CONFIG)``
            to open the project's configured store (S3) from its settings.
        sys_path: the coordinator's ``sys.path`` (entries missing on the worker are
            appended, so installed packages of the worker keep precedence).
        modules: ``(name, file, source text, is package)`` of the pipeline's own modules.
        key: identifies the context, so a worker loads it once.
    """

    store: tuple[str, Any]
    sys_path: tuple[str, ...]
    modules: tuple[tuple[str, str, str, bool], ...]
    key: str


def worker_context(project: Project, module_files: Sequence[tuple[str, str]]) -> WorkerContext:
    """Describe how workers open ``project``'s store and load the pipeline's modules.

    Raises:
        ExecutorError: the store is one other processes cannot open (an in-memory store).
    """
    from pipetrail.hashing import digest_value
    from pipetrail.store import LocalStore

    store = project.store
    if isinstance(store, LocalStore):
        spec: tuple[str, Any] = ("local", os.fspath(store.root.absolute()))
    elif project.config.store_url is not None and type(store).__name__ == "S3Store":
        spec = ("config", project.config)
    else:
        raise ExecutorError(
            f"steps running in other processes must open the store themselves, and "
            f"{store!r} cannot be opened there; use a local folder or an S3 store, or the "
            "inline executor"
        )
    modules = []
    for name, file in module_files:
        try:
            with open(file, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise ExecutorError(
                f"cannot read the pipeline module {name!r} ({file}) to send it to the "
                f"workers: {exc}"
            ) from None
        modules.append((name, file, text, os.path.basename(file) == "__init__.py"))
    key = digest_value(
        {"store": spec[1] if spec[0] == "local" else str(spec[1].root), "modules": modules}
    )
    return WorkerContext(spec, tuple(sys.path), tuple(modules), key)


# -- coordinator side ----------------------------------------------------------------
def _step_function(module: str, qualname: str) -> Any:
    """The function of the step (or plain function) at ``module.qualname``."""
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    return getattr(target, "__pipetrail_func__", target)


class _TaskPickler(pickle.Pickler):
    """Sends a step's function as a reference to the step that wraps it."""

    def reducer_override(self, obj: Any) -> Any:
        if callable(obj) and type(obj).__name__ == "function":
            module = getattr(obj, "__module__", None)
            qualname = getattr(obj, "__qualname__", "")
            if module and "<locals>" not in qualname:
                found = sys.modules.get(module)
                holder: Any = found
                for part in qualname.split("."):
                    holder = getattr(holder, part, None)
                if holder is not obj and getattr(holder, "__pipetrail_func__", None) is obj:
                    return (_step_function, (module, qualname))
        return NotImplemented


def encode_task(task: StepTask) -> bytes:
    """The task as bytes for a worker.

    Raises:
        ExecutorError: the task cannot be sent (its function is defined inside another
            function or in ``__main__``, or an argument cannot be pickled); names the step.
    """
    if getattr(task.func, "__module__", None) == "__main__":
        raise ExecutorError(
            f"step {task.step_name!r} is defined in the script being run (__main__), which "
            "worker processes cannot import; move it to a module (the pipeline file run "
            "with `pipetrail run` is one), or use the inline executor"
        )
    buffer = io.BytesIO()
    try:
        _TaskPickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(task)
    except Exception as exc:  # noqa: BLE001 - pickle raises many kinds for one cause
        raise ExecutorError(
            f"step {task.step_name!r} cannot be sent to a worker process: "
            f"{type(exc).__name__}: {exc}. Define the step at module level in the "
            "pipeline file and pass values that can be pickled, or use the inline executor"
        ) from None
    return buffer.getvalue()


def decode_result(data: bytes) -> TaskResult:
    """The :class:`TaskResult` a worker returned (see :func:`run_shipped`)."""
    result: TaskResult
    result, cause = pickle.loads(data)
    if result.error is not None and cause is not None:
        result.error.__cause__ = cause
    return result


# -- worker side ---------------------------------------------------------------------
class _SourceFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports the pipeline's own modules from the source text the coordinator sent."""

    def __init__(self, modules: tuple[tuple[str, str, str, bool], ...]) -> None:
        self._modules = {name: (file, text, package) for name, file, text, package in modules}

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        found = self._modules.get(fullname)
        if found is None:
            return None
        spec = importlib.machinery.ModuleSpec(fullname, self, origin=found[0], is_package=found[2])
        spec.has_location = True
        return spec

    def exec_module(self, module: ModuleType) -> None:
        file, text, _ = self._modules[module.__name__]
        module.__file__ = file
        exec(compile(text, file, "exec", dont_inherit=True), module.__dict__)  # noqa: S102


_LOADED: dict[str, tuple[ContentStore, SerializerRegistry]] = {}
_LOCK = threading.Lock()


def _load_context(context: WorkerContext) -> tuple[ContentStore, SerializerRegistry]:
    with _LOCK:
        found = _LOADED.get(context.key)
        if found is not None:
            return found
        for entry in context.sys_path:
            if entry not in sys.path:
                sys.path.append(entry)
        if context.modules:
            sys.meta_path.insert(0, _SourceFinder(context.modules))
            for name, *_ in context.modules:
                if name not in sys.modules:
                    importlib.import_module(name)
        kind, where = context.store
        if kind == "local":
            from pathlib import Path

            from pipetrail.store import LocalStore

            store: ContentStore = LocalStore(Path(where), create=False)
        else:
            from pipetrail.execution.store_open import open_store

            store = open_store(where)
        from pipetrail.capture.output import logging_ready
        from pipetrail.store import default_registry

        # What steps print is captured, and shown on the worker's stderr: a worker's
        # stdout may be the coordinator's, which carries only its own output (--json).
        sys.stdout = sys.stderr
        # Output capture's logging stays installed for the worker's life, as the
        # coordinator keeps it for a run's steps.
        logging_ready().__enter__()
        found = _LOADED[context.key] = (store, default_registry())
        return found


def _sendable(result: TaskResult) -> tuple[TaskResult, BaseException | None]:
    """``result`` with an error that pickles, and the error's cause (kept apart)."""
    error = result.error
    if error is None:
        return result, None
    cause = error.__cause__
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # noqa: BLE001 - any failure means: send a stand-in
        result.error = ShippedError(type(error).__name__, str(error))
    if cause is not None:
        try:
            pickle.dumps(cause)
        except Exception:  # noqa: BLE001 - the cause is optional; drop it
            cause = None
    return result, cause


def run_chained(
    context: WorkerContext, data: bytes, upstream: Sequence[bytes], worker: dict[str, Any]
) -> bytes:
    """Run one chained task: its inputs are outputs of the ``upstream`` results.

    ``upstream`` are the encoded results of the tasks it was submitted after (Dask hands
    them over on the worker, without a round trip through the coordinator). Each
    :class:`ChainedInput` of the task is loaded from the bytes its upstream step just
    wrote, as the coordinator loads it for an unchained task. When an upstream step
    failed, or an input is one only the coordinator may load, the step does not run:
    the result's error is a :class:`ChainBroken`, and nothing is stored.
    """
    try:
        store, registry = _load_context(context)
        results = [decode_result(item) for item in upstream]
        task: StepTask = pickle.loads(data)
    except Exception as exc:  # noqa: BLE001 - the coordinator sends the step again
        return _broken(f"the chained task could not be read: {type(exc).__name__}: {exc}")
    failed = [r for r in results if r.error is not None]
    if failed:
        return _broken("an upstream step failed")
    digests: dict[str, str] = {}
    used: dict[str, str] = {}
    try:
        kwargs = {}
        for name, value in task.kwargs.items():
            kwargs[name] = _chained(value, results, store, registry, used)
            if isinstance(value, ChainedInput):
                digests[name] = results[value.slot].outputs[value.name].digest
    except Exception as exc:  # noqa: BLE001 - the coordinator loads it, and reports a failure
        return _broken(f"an input is loaded by the coordinator ({type(exc).__name__}: {exc})")
    task.kwargs = kwargs
    task.input_digests = {**task.input_digests, **digests}
    return _run_task(task, store, registry, worker, used)


def _broken(reason: str) -> bytes:
    from pipetrail.execution.task import TaskResult

    return encode_result(TaskResult(error=ChainBroken(f"the chained step did not run: {reason}")))


def _chained(
    value: Any,
    results: Sequence[TaskResult],
    store: ContentStore,
    registry: SerializerRegistry,
    used: dict[str, str],
) -> Any:
    """``value`` with each :class:`ChainedInput` in it loaded from its upstream result.

    Each one loaded is noted in ``used`` (``"SLOT/NAME"`` -> digest).
    """
    if isinstance(value, ChainedInput):
        from pipetrail.store.serializers.kept_bytes import kept_view

        result = results[value.slot]
        record = result.outputs[value.name]
        if record.meta.get("sealed") or record.serializer in _COPIED_FORMATS:
            raise ExecutorError(f"its input {record.digest} is sealed, a file or a folder")
        written = {**result.small_objects, **result.kept}
        used[f"{value.slot}/{value.name}"] = record.digest
        return registry.load(record, kept_view(store, written))
    if type(value) is list:
        return [_chained(v, results, store, registry, used) for v in value]
    if type(value) is tuple:
        return tuple(_chained(v, results, store, registry, used) for v in value)
    if type(value) is dict:
        return {k: _chained(v, results, store, registry, used) for k, v in value.items()}
    return value


def run_shipped(context: WorkerContext, data: bytes, worker: dict[str, Any]) -> bytes:
    """Run one encoded task on this worker; return the encoded result.

    Small objects a local store would put in its pack are held while the step runs and
    sent back with the result (``TaskResult.small_objects``): the coordinator writes them
    in its own batch, committed before the events naming them, so the workers never
    contend for the pack's lock. Larger objects are written here, each complete.

    Args:
        context: the run's :class:`WorkerContext`.
        data: the task from :func:`encode_task`.
        worker: what to record about where it ran (``host`` and ``pid`` are added).
    """
    try:
        store, registry = _load_context(context)
        task: StepTask = pickle.loads(data)
    except Exception as exc:  # noqa: BLE001 - whatever fails here is reported, not raised
        from pipetrail.execution.task import TaskResult

        error = ExecutorError(
            f"the worker could not load the step: {type(exc).__name__}: {exc}; the worker "
            "needs pipetrail, the packages the pipeline imports, and access to the store"
        )
        return encode_result(TaskResult(error=error, traceback=f"ExecutorError: {error}\n"))
    try:
        task.kwargs = {name: _loaded(value, store, registry) for name, value in task.kwargs.items()}
    except _InputUnreadable as problem:
        from pipetrail.execution.task import TaskResult

        return encode_result(TaskResult(error=problem.error(task), traceback=problem.text))
    return _run_task(task, store, registry, worker)


def _run_task(
    task: StepTask,
    store: ContentStore,
    registry: SerializerRegistry,
    worker: dict[str, Any],
    chained_inputs: dict[str, str] | None = None,
) -> bytes:
    """Execute a decoded task with its inputs loaded; the encoded result."""
    from pipetrail.execution.task import execute_task

    take = getattr(store, "take_small_writes", None)
    if take is not None:
        store.hold_small_writes()  # type: ignore[attr-defined]
    try:
        result = execute_task(task, store, registry)
    finally:
        small = take() if take is not None else {}
    result.small_objects = small
    result.worker = {"host": socket.gethostname(), "pid": os.getpid(), **worker}
    result.chained_inputs = dict(chained_inputs or {})
    return encode_result(result)


class _InputUnreadable(Exception):
    """A :class:`StoredInput` the worker could not load (carries the original error)."""

    def __init__(self, record: StoredArtifact, cause: Exception) -> None:
        super().__init__(str(cause))
        self.record = record
        self.cause = cause
        self.text = "".join(traceback_module.format_exception(cause))

    def error(self, task: StepTask) -> Exception:
        """The step's error, naming the step and the artifact."""
        what = (
            f"step {task.step_name!r}: its input {self.record.digest} (object "
            f"{self.record.blob}) could not be loaded on the worker: "
            f"{type(self.cause).__name__}: {self.cause}"
        )
        if isinstance(self.cause, IntegrityError):
            return IntegrityError(
                what + "; the object was quarantined, so the next run executes the step "
                "that made it again"
            )
        return ExecutorError(
            what + "; check that the worker reaches the store and has the packages that "
            "read this format"
        )


def _loaded(value: Any, store: ContentStore, registry: SerializerRegistry) -> Any:
    """``value`` with each :class:`StoredInput` in it (also in lists...) loaded."""
    if isinstance(value, StoredInput):
        try:
            return registry.load(value.record, store)
        except Exception as exc:
            raise _InputUnreadable(value.record, exc) from exc
    if type(value) is list:
        return [_loaded(v, store, registry) for v in value]
    if type(value) is tuple:
        return tuple(_loaded(v, store, registry) for v in value)
    if type(value) is dict:
        return {k: _loaded(v, store, registry) for k, v in value.items()}
    return value


def encode_result(result: TaskResult) -> bytes:
    """A worker's result as bytes for :func:`decode_result`."""
    return pickle.dumps(_sendable(result), protocol=pickle.HIGHEST_PROTOCOL)
