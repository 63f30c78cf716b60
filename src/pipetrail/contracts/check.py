"""Checking one contract on one value: the entry point the step execution calls.

:func:`check_boundary` first makes sure the value is of a type the contract can check (a
pandera schema on a dict is a violation, reported as such, not a crash), counts its rows,
checks the row-count bounds, then hands the value to the checker of the contract's kind.
It never raises for bad data: every finding is a :class:`CheckResult` of the returned
:class:`BoundaryResult`. Libraries are imported only by the checker of the kind in use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sized
from typing import TYPE_CHECKING, Any

from pipetrail.contracts.results import BoundaryResult, CheckResult
from pipetrail.core.contract import qualified_name

if TYPE_CHECKING:
    from pipetrail.core.contract import Boundary, Contract

__all__ = ["check_boundary", "count_rows"]

_PANDAS = "pandas.DataFrame"
_POLARS = ("polars.DataFrame", "polars.LazyFrame")
_ARROW = ("pyarrow.Table", "pyarrow.RecordBatch")
_MODEL = "pydantic.main.BaseModel"


def _type_names(value: Any) -> set[str]:
    return {qualified_name(base) for base in type(value).__mro__}


def _accepts(kind: str, value: Any) -> bool:
    names = _type_names(value)
    if kind == "pandera":
        return _PANDAS in names
    if kind == "pandera-polars":
        return bool(names.intersection(_POLARS))
    if kind == "arrow":
        return _PANDAS in names or bool(names.intersection(_ARROW))
    if kind == "pydantic":
        return isinstance(value, Mapping) or _MODEL in names
    return count_rows(value) is not None


def count_rows(value: Any) -> int | None:
    """Return the number of rows of a table (pandas, polars, pyarrow) or a sequence.

    Returns None for a value without rows (a mapping, a scalar, a model).
    """
    names = _type_names(value)
    if "polars.LazyFrame" in names:
        import polars as pl

        return int(value.select(pl.len()).collect().item())
    if names.intersection(_ARROW):
        return int(value.num_rows)
    if isinstance(value, Mapping | str | bytes) or _MODEL in names:
        return None
    if isinstance(value, Sized):
        return len(value)
    return None


def _row_check(contract: Contract, rows: int | None) -> CheckResult:
    low, high = contract.rows or (None, None)
    name = f"row_count in [{'0' if low is None else low}, {'inf' if high is None else high}]"
    check = CheckResult(name)
    if rows is None:
        check.fail(1, [], "the value has no rows to count")
    elif (low is not None and rows < low) or (high is not None and rows > high):
        check.fail(1, [{"index": None, "value": rows}], f"the artifact has {rows} rows")
    return check


def check_boundary(
    boundary: Boundary, value: Any, *, fingerprint: str, artifact: str | None = None
) -> BoundaryResult:
    """Check ``value`` against the contract of one input or output.

    Args:
        boundary: where the contract applies (input or output name) and the contract.
        value: the value passed to (input) or returned by (output) the step.
        fingerprint: the contract's digest, recorded with the result.
        artifact: the digest of the value's artifact, when known.

    Returns:
        The result of every check; ``ok`` is False when any failed.
    """
    contract = boundary.contract
    result = BoundaryResult(
        boundary.direction, boundary.name, contract.kind, fingerprint, artifact=artifact
    )
    if not _accepts(contract.kind, value):
        result.checks = [
            CheckResult(
                "type",
                status="failed",
                failures=1,
                message=f"the {contract.kind} contract checks {contract.describes}, "
                f"but the value is a {qualified_name(type(value)).removeprefix('builtins.')}",
            )
        ]
        return result
    result.rows = count_rows(value)
    if contract.kind == "pandera" or contract.kind == "pandera-polars":
        from pipetrail.contracts.pandera_checks import check_pandera

        check_pandera(contract, value, result)
    elif contract.kind == "arrow":
        from pipetrail.contracts.arrow_checks import check_arrow

        check_arrow(contract, value, result)
    elif contract.kind == "pydantic":
        from pipetrail.contracts.model_checks import check_model

        check_model(contract, value, result)
    if contract.rows is not None:
        result.checks.insert(0, _row_check(contract, result.rows))
    return result
