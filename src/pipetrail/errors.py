"""The whole pipetrail exception tree; every module may import this one.

Every message says what happened, which object it concerns (step, artifact, run) and how
to fix it. Third-party exceptions are translated at the backend boundary and never reach
callers.

```
PipetrailError
├── DefinitionError            a step or pipeline is declared or called wrongly (build time)
│   └── ParamError             a run parameter is unknown or has the wrong type
├── UnhashableValueError       a value has no canonical encoding / fingerprint
├── SerializationError         no serializer for a type, or a serializer failed
├── StepFailedError            user step code raised (original exception is the cause)
├── StoreError                 content store I/O problem
│   └── IntegrityError         stored bytes do not match their digest
├── LedgerError                metadata store problem (connection, migration, concurrency)
│   └── TamperedLedgerError    the hash chain is broken (names the first bad sequence)
├── ProjectError               no project / bad pipetrail.toml
├── NotFoundError (KeyError)   a run, step run, artifact or digest prefix does not exist
│   └── AmbiguousPrefixError   a digest / id prefix matches several objects
└── GovernanceError            reserved for promotion, approvals and policies
    └── ApprovalRequiredError
```
"""

from __future__ import annotations

__all__ = [
    "AmbiguousPrefixError",
    "ApprovalRequiredError",
    "DefinitionError",
    "GovernanceError",
    "IntegrityError",
    "LedgerError",
    "NotFoundError",
    "ParamError",
    "PipetrailError",
    "ProjectError",
    "SerializationError",
    "StepFailedError",
    "StoreError",
    "TamperedLedgerError",
    "UnhashableValueError",
]


class PipetrailError(Exception):
    """Root of every error pipetrail raises on purpose."""


class DefinitionError(PipetrailError):
    """A step or pipeline is declared or wired wrongly; raised before anything runs."""


class ParamError(DefinitionError):
    """A run parameter is unknown, missing or of the wrong type; nothing was recorded."""


class UnhashableValueError(PipetrailError):
    """A value has no canonical encoding, so it cannot be fingerprinted."""


class SerializationError(PipetrailError):
    """No serializer handles a value's type, or the serializer failed."""


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


class StoreError(PipetrailError):
    """The content store could not read or write an object."""


class IntegrityError(StoreError):
    """Stored bytes do not hash to the digest they are stored under."""


class LedgerError(PipetrailError):
    """The metadata store (ledger and projections) could not be used."""


class TamperedLedgerError(LedgerError):
    """The ledger's hash chain does not verify.

    Attributes:
        seq: the first sequence number at which verification failed.
    """

    def __init__(self, message: str, *, seq: int) -> None:
        super().__init__(message)
        self.seq = seq


class ProjectError(PipetrailError):
    """The project folder or its ``pipetrail.toml`` is missing or invalid."""


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
