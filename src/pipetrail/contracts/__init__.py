"""Contracts at step boundaries: schemas and checks on a step's inputs and outputs.

Owns checking values against contracts (pandera for pandas and polars frames,
``pyarrow.Schema``, pydantic models, row-count bounds), the per-check results and
reports, and contract fingerprints. The declaration, :class:`Contract`, is pure and lives
in :mod:`pipetrail.core.contract`. Imports ``core``, ``hashing`` and ``errors`` only, never
the store, the ledger or execution; schema libraries are imported lazily, by the checker
that needs them. See docs/contracts.md.
"""

from __future__ import annotations

import typing as _typing

from pipetrail.core.lazy import lazy_exports as _lazy_exports

if _typing.TYPE_CHECKING:
    from pipetrail.contracts.check import check_boundary as check_boundary
    from pipetrail.contracts.check import count_rows as count_rows
    from pipetrail.contracts.fingerprint import ContractFingerprint as ContractFingerprint
    from pipetrail.contracts.fingerprint import fingerprint_contract as fingerprint_contract
    from pipetrail.contracts.results import MAX_EXAMPLES as MAX_EXAMPLES
    from pipetrail.contracts.results import REPORT_FORMAT as REPORT_FORMAT
    from pipetrail.contracts.results import BoundaryResult as BoundaryResult
    from pipetrail.contracts.results import CheckResult as CheckResult
    from pipetrail.contracts.results import describe_violations as describe_violations
    from pipetrail.core.contract import Boundary as Boundary
    from pipetrail.core.contract import Contract as Contract

__all__ = [
    "Boundary",
    "BoundaryResult",
    "CheckResult",
    "Contract",
    "ContractFingerprint",
    "MAX_EXAMPLES",
    "REPORT_FORMAT",
    "check_boundary",
    "count_rows",
    "describe_violations",
    "fingerprint_contract",
]

# Each name is imported from its module on first use (PEP 562): importing one module of
# the package does not import the others.
__getattr__, __dir__ = _lazy_exports(
    __name__,
    {
        "check_boundary": "pipetrail.contracts.check",
        "count_rows": "pipetrail.contracts.check",
        "ContractFingerprint": "pipetrail.contracts.fingerprint",
        "fingerprint_contract": "pipetrail.contracts.fingerprint",
        "MAX_EXAMPLES": "pipetrail.contracts.results",
        "REPORT_FORMAT": "pipetrail.contracts.results",
        "BoundaryResult": "pipetrail.contracts.results",
        "CheckResult": "pipetrail.contracts.results",
        "describe_violations": "pipetrail.contracts.results",
        "Boundary": "pipetrail.core.contract",
        "Contract": "pipetrail.core.contract",
    },
)
