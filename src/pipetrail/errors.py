"""The whole pipetrail exception tree; every module may import this one.

Every message says what happened, which object it concerns (step, artifact, run) and how
to fix it. Third-party exceptions are translated at the backend boundary and never reach
callers.

```
PipetrailError
├── DefinitionError            a step or pipeline is declared or called wrongly (build time)
│   └── ParamError             a run parameter is unknown or has the wrong type
│       └── ParamsFileError    a params file cannot be read or parsed (names file, line)
├── UnhashableValueError       a value has no canonical encoding / fingerprint
├── SerializationError         no serializer for a type, or a serializer failed
│   └── LoadError              a step's input could not be loaded (names step, input, artifact)
├── StepFailedError            user step code raised (original exception is the cause)
│   └── ContractViolationError a step's input or output broke its contract
├── NotReproducibleError       a recorded run cannot be re-executed as it was
├── StoreError                 content store I/O problem
│   └── IntegrityError         stored bytes do not match their digest
├── LedgerError                metadata store problem (connection, migration, concurrency)
│   └── TamperedLedgerError    the hash chain is broken, or a derived row disagrees with it
│       └── CheckpointError    a checkpoint is forged, foreign or inconsistent with the ledger
├── ProjectError               no project / bad pipetrail.toml
├── ExecutorError              an executor cannot start or reach its workers (names where)
│   ├── WorkerLostError        the worker process running a step died (names the step)
│   └── ResourceError          no worker or pool can give a step what it requests
├── QuotaExceededError         a quota of the project or user is used up (names it)
├── OutputFileError            a file asked for (an export, a report) cannot be written
├── ParityError                the environment differs from the parity reference run
├── LeakageError               data subsets share rows or groups (names subsets and counts)
├── NotFoundError (KeyError)   a run, step run, artifact or digest prefix does not exist
│   └── AmbiguousPrefixError   a digest / id prefix matches several objects
└── GovernanceError            promotion, approvals, policies, identities and roles
    ├── ApprovalRequiredError
    ├── IdentityError          no such user, no or unreadable key, a malformed public key
    └── PermissionDeniedError  the acting user's roles do not allow the action
```

``RunInterruptedError`` stands outside the tree on purpose: it subclasses
``KeyboardInterrupt``, so an interrupted run stops the caller's code as Ctrl-C always
does, and ``except Exception`` (in a step or in a caller) never swallows it.

``ParityWarning`` (a ``UserWarning``) reports environment differences when parity is
``"warn"``; ``LeakageWarning`` reports shared rows when a split's leakage check is
``"warn"``.
"""

from __future__ import annotations

import errno as _errno

__all__ = [
    "AmbiguousPrefixError",
    "ApprovalRequiredError",
    "CheckpointError",
    "ContractViolationError",
    "DefinitionError",
    "ExecutorError",
    "GovernanceError",
    "IdentityError",
    "IntegrityError",
    "LeakageError",
    "LeakageWarning",
    "LedgerError",
    "LoadError",
    "NotFoundError",
    "NotReproducibleError",
    "OutputFileError",
    "ParamError",
    "ParamsFileError",
    "ParityError",
    "ParityWarning",
    "PermissionDeniedError",
    "PipetrailError",
    "ProjectError",
    "QuotaExceededError",
    "ResourceError",
    "RunInterruptedError",
    "SerializationError",
    "StepFailedError",
    "StoreError",
    "TamperedLedgerError",
    "UnhashableValueError",
    "WorkerLostError",
]


#: The ``errno`` values of a full disk or an exhausted quota.
_DISK_FULL = frozenset({_errno.ENOSPC, _errno.EDQUOT})


class PipetrailError(Exception):
    """Root of every error pipetrail raises on purpose."""


class DefinitionError(PipetrailError):
    """A step or pipeline is declared or wired wrongly; raised before anything runs."""


class ParamError(DefinitionError):
    """A run parameter is unknown, missing or of the wrong type; nothing was recorded.

    Attributes:
        problems: ``(key, reason)`` pairs, one per bad parameter; a key is dotted for a
            field of a nested model (``model.C``).
    """

    def __init__(self, message: str, *, problems: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class ParamsFileError(ParamError):
    """A params file is missing, unreadable, malformed or not a table of parameters.

    Attributes:
        path: the file.
        line: the 1-based line of a syntax error, when the parser tells.
    """

    def __init__(self, message: str, *, path: str, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


class UnhashableValueError(PipetrailError):
    """A value has no canonical encoding, so it cannot be fingerprinted."""


class SerializationError(PipetrailError):
    """No serializer handles a value's type, or the serializer failed."""


class LoadError(SerializationError):
    """A step's input could not be loaded from the store, so the step did not run.

    Raised by the runner for any failure to turn a stored artifact back into a value
    other than corrupt bytes (those are recomputed, see
    :class:`IntegrityError`): the serializer failed on bytes that match their digest, the
    artifact was written in a newer format version, a library raised. The run is recorded
    as failed; the message names the step, the input, the artifact and a fix.

    Attributes:
        step: the step (node id) whose input it is.
        run_id: the run.
        input_name: the input's name (``x``, or ``xs[1]`` for an item of a list of inputs).
        digest: the artifact that could not be loaded, when one was identified.
    """

    def __init__(
        self, message: str, *, step: str, run_id: str, input_name: str, digest: str | None = None
    ) -> None:
        super().__init__(message)
        self.step = step
        self.run_id = run_id
        self.input_name = input_name
        self.digest = digest

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments: rebuild through a helper when sent between processes.
        return (_rebuild_load, (str(self), self.step, self.run_id, self.input_name, self.digest))


def _rebuild_load(
    message: str, step: str, run_id: str, input_name: str, digest: str | None
) -> LoadError:
    return LoadError(message, step=step, run_id=run_id, input_name=input_name, digest=digest)


class StepFailedError(PipetrailError):
    """User code inside a step raised; the original exception is ``__cause__``.

    Attributes:
        step: the step run's name inside the run (``train`` or ``train[1]``).
        run_id: the run the step belonged to.
        step_run_id: the id of the failed step run, when one was recorded.
    """

    def __init__(
        self, message: str, *, step: str, run_id: str, step_run_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.step = step
        self.run_id = run_id
        self.step_run_id = step_run_id

    @property
    def store_error(self) -> StoreError | None:
        """The store error behind the failure, when the store could not take the outputs.

        A step fails as well when storing what it returned fails (a full disk); that is
        the store's failure, not the step's code. A digest mismatch
        (:class:`IntegrityError`) is not such a failure.
        """
        cause = self.__cause__
        if isinstance(cause, StoreError) and not isinstance(cause, IntegrityError):
            return cause
        return None


class ContractViolationError(StepFailedError):
    """A step's input or output does not satisfy its contract; the step did not complete.

    Raised by the step's execution (then ``run_id`` is empty) and, with the run filled in,
    by the runner. The message names the step, the boundary, the artifact, the column, the
    check and a few failing values.

    Attributes:
        report: the violation report (boundaries, checks, failure examples) as plain data.
        report_digest: the digest of the stored report artifact, when it was stored.
    """

    def __init__(
        self,
        message: str,
        *,
        step: str,
        run_id: str = "",
        step_run_id: str | None = None,
        report: dict[str, object] | None = None,
        report_digest: str | None = None,
    ) -> None:
        super().__init__(message, step=step, run_id=run_id, step_run_id=step_run_id)
        self.report = report or {}
        self.report_digest = report_digest

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments: rebuild through a helper when sent between processes.
        state = (str(self), self.step, self.run_id, self.step_run_id, self.report)
        return (_rebuild_violation, (*state, self.report_digest))


def _rebuild_violation(
    message: str,
    step: str,
    run_id: str,
    step_run_id: str | None,
    report: dict[str, object],
    report_digest: str | None,
) -> ContractViolationError:
    return ContractViolationError(
        message,
        step=step,
        run_id=run_id,
        step_run_id=step_run_id,
        report=report,
        report_digest=report_digest,
    )


class NotReproducibleError(PipetrailError):
    """A recorded run cannot be re-executed as it was (not a mismatch of results).

    Raised before anything is recorded, for example when a source tracked by reference
    changed since the run, a source snapshot is missing from the store, or the run's
    pipeline file cannot be found.

    Attributes:
        run_id: the run that was to be reproduced.
    """

    def __init__(self, message: str, *, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class StoreError(PipetrailError):
    """The content store could not read or write an object."""


class IntegrityError(StoreError):
    """Stored bytes do not hash to the digest they are stored under."""


class LedgerError(PipetrailError):
    """The metadata store (ledger and projections) could not be used."""


class TamperedLedgerError(LedgerError):
    """The ledger's hash chain does not verify, or a derived row disagrees with its event.

    The message names what failed (the sequence number, or the table and key of the row)
    and the fix (``pipetrail audit verify``, ``pipetrail audit rebuild``).

    Attributes:
        seq: the sequence number of the event at which verification failed.
    """

    def __init__(self, message: str, *, seq: int) -> None:
        super().__init__(message)
        self.seq = seq


class CheckpointError(TamperedLedgerError):
    """A signed checkpoint is malformed, unsigned by a known key, or not consistent.

    Not consistent with the ledger: truncated, rolled back, rewritten or forked.
    """


class ProjectError(PipetrailError):
    """The project folder or its ``pipetrail.toml`` is missing or invalid."""


class ExecutorError(PipetrailError):
    """An executor could not start, reach its scheduler or send a step to its workers."""


class WorkerLostError(ExecutorError):
    """The worker process running a step died before returning (a crash, ``os._exit``).

    It is the step's error: retried per the step's retry policy, else the step fails.
    """


class ResourceError(ExecutorError):
    """No worker (nor the whole pool) has the resources a step requests.

    It is the step's error, never retried: names the step, the resource and what the
    executor has.
    """


class QuotaExceededError(PipetrailError):
    """A quota of ``[quotas]`` is used up: the step was refused before it started.

    Names the quota (concurrent steps or CPU-hours per day, of the project or of a user),
    its limit and what is in use.

    Attributes:
        run_id: the run it stopped (recorded as failed with this message).
    """

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message)
        self.run_id = run_id

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_quota, (str(self), self.run_id))


def _rebuild_quota(message: str, run_id: str | None) -> QuotaExceededError:
    return QuotaExceededError(message, run_id=run_id)


class OutputFileError(PipetrailError):
    """A file pipetrail was asked to write (``-o FILE``, a report) could not be written.

    Nothing was left behind: the file is either written whole or not changed.

    Attributes:
        path: the file.
        errno: the system's error number (``errno.ENOSPC`` when the disk is full).
    """

    def __init__(self, message: str, *, path: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.errno = errno

    @property
    def disk_full(self) -> bool:
        """Whether the filesystem had no space (or quota) left."""
        return self.errno in _DISK_FULL

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments: rebuild through a helper when sent between processes.
        return (_rebuild_output_file, (str(self), self.path, self.errno))


def _rebuild_output_file(message: str, path: str, errno: int | None) -> OutputFileError:
    return OutputFileError(message, path=path, errno=errno)


class ParityError(PipetrailError):
    """Parity is ``"strict"`` and the environment differs from the reference run's.

    Raised before the run records anything.

    Attributes:
        reference: the reference run id.
        differences: one line per counted difference.
    """

    def __init__(self, message: str, *, reference: str, differences: tuple[str, ...]) -> None:
        super().__init__(message)
        self.reference = reference
        self.differences = differences


class ParityWarning(UserWarning):
    """Parity is ``"warn"`` and the environment differs from the reference run's."""


class LeakageError(PipetrailError):
    """Subsets of a split share rows (by key or content) or groups; nothing was returned.

    Attributes:
        overlaps: one ``{"subsets": [a, b], "rows": n, "groups": m}`` per pair of subsets
            that share something (``groups`` is None when no group column was given).
    """

    def __init__(self, message: str, *, overlaps: tuple[dict[str, object], ...] = ()) -> None:
        super().__init__(message)
        self.overlaps = overlaps

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments: rebuild through a helper when sent between processes.
        return (_rebuild_leakage, (str(self), self.overlaps))


def _rebuild_leakage(message: str, overlaps: tuple[dict[str, object], ...]) -> LeakageError:
    return LeakageError(message, overlaps=overlaps)


class LeakageWarning(UserWarning):
    """A split's leakage check is ``"warn"`` and its subsets share rows or groups."""


class NotFoundError(PipetrailError, KeyError):
    """A run, step run, artifact or prefix does not exist."""

    def __str__(self) -> str:
        # KeyError.__str__ would wrap the message in quotes.
        return str(self.args[0]) if self.args else ""


class AmbiguousPrefixError(NotFoundError):
    """An id or digest prefix matches more than one object."""


class GovernanceError(PipetrailError):
    """A governance rule (promotion, approval, policy) refused an action."""


class ApprovalRequiredError(GovernanceError):
    """An action needs an approval that has not been given."""


class IdentityError(GovernanceError):
    """Who is acting cannot be established: no such user, or no usable key."""


class PermissionDeniedError(GovernanceError):
    """The acting user's roles do not allow the action (deny by default)."""


class RunInterruptedError(KeyboardInterrupt):
    """A run was stopped by SIGINT (Ctrl-C) or SIGTERM and recorded as ``interrupted``.

    A ``KeyboardInterrupt``, not a :class:`PipetrailError`: code that catches
    ``Exception`` lets it through, as it does Ctrl-C.

    Attributes:
        signal_name: ``"SIGINT"`` or ``"SIGTERM"``.
        run_id: the run recorded as interrupted; None when the signal came before the
            run was recorded (nothing was).
    """

    def __init__(self, signal_name: str = "SIGINT", *, run_id: str | None = None) -> None:
        super().__init__(signal_name)
        self.signal_name = signal_name
        self.run_id = run_id

    def __str__(self) -> str:
        if self.run_id is None:
            return f"interrupted by {self.signal_name} before the run was recorded"
        return f"run {self.run_id} interrupted by {self.signal_name}"

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments: rebuild through a helper when sent between processes.
        return (_rebuild_interrupted, (self.signal_name, self.run_id))


def _rebuild_interrupted(signal_name: str, run_id: str | None) -> RunInterruptedError:
    return RunInterruptedError(signal_name, run_id=run_id)
