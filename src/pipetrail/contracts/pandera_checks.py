"""Checking pandera contracts (pandas and polars) and listing the result of every check.

pandera validates once, lazily (``lazy=True``), and reports only what failed. The result
of every check is derived from the schema's own list of checks (dtype, nullability,
uniqueness, presence and each ``Check`` of every column; frame-level checks, uniqueness
and strictness) minus the failure cases: the data is never validated twice. A failure
case that matches no listed check is kept as a check of its own, so nothing is lost.

Validation always runs with pandera's full depth and enabled, whatever
``PANDERA_VALIDATION_ENABLED`` or ``PANDERA_VALIDATION_DEPTH`` say: a recorded "passed"
must mean the checks ran. pandera is imported here, lazily, never at package import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.contracts.fingerprint import pandera_schema
from pipetrail.contracts.results import MAX_EXAMPLES, CheckResult, plain_value

if TYPE_CHECKING:
    from pipetrail.contracts.results import BoundaryResult
    from pipetrail.core.contract import Contract

__all__ = ["check_pandera"]

_KEYS = ("schema_context", "column", "check", "check_number")


def _name(check: Any) -> str:
    return str(getattr(check, "error", None) or getattr(check, "name", None) or "check")


def _expected(schema: Any) -> dict[tuple[Any, ...], CheckResult]:
    """Every check the schema declares, keyed the way failure cases are matched."""
    found: dict[tuple[Any, ...], CheckResult] = {}
    for label, column in (schema.columns or {}).items():
        name = str(label)
        if getattr(column, "required", True):
            found[("present", name)] = CheckResult("column_in_dataframe", name)
        if getattr(column, "dtype", None) is not None:
            found[("dtype", name)] = CheckResult(f"dtype('{column.dtype}')", name)
        if not getattr(column, "nullable", True):
            found[("nullable", name)] = CheckResult("not_nullable", name)
        if getattr(column, "unique", False):
            found[("unique", name)] = CheckResult("field_uniqueness", name)
        for i, check in enumerate(column.checks or []):
            found[("column", name, i)] = CheckResult(_name(check), name)
    if getattr(schema, "strict", False) is True:
        found[("strict",)] = CheckResult("column_in_schema")
    if getattr(schema, "unique", None):
        found[("frame_unique",)] = CheckResult("multiple_fields_uniqueness")
    for i, check in enumerate(schema.checks or []):
        found[("frame", i)] = CheckResult(_name(check))
    return found


def _match_key(context: Any, column: Any, check: Any, number: Any, first: Any) -> tuple[Any, ...]:
    # Grouping turns a missing column name into NaN; NaN is the only value unequal to itself.
    column = None if column is None or column != column else str(column)
    has_number = number is not None and number == number  # NaN is "no number"
    if context == "Column" and has_number:
        return ("column", column, int(number))
    if context == "DataFrameSchema" and has_number:
        return ("frame", int(number))
    if check == "not_nullable":
        return ("nullable", column)
    if check == "field_uniqueness":
        return ("unique", column)
    if isinstance(check, str) and check.startswith("dtype("):
        return ("dtype", column)
    if check == "column_in_dataframe":
        return ("present", str(first) if column is None else column)
    if check == "column_in_schema":
        return ("strict",)
    if check == "multiple_fields_uniqueness":
        return ("frame_unique",)
    return ("other", context, column, check)


def _groups_pandas(cases: Any) -> list[dict[str, Any]]:
    groups = []
    for key, frame in cases.groupby(list(_KEYS), dropna=False, sort=False):
        head = frame.head(MAX_EXAMPLES)
        groups.append(
            {
                **dict(zip(_KEYS, key, strict=True)),
                "n": len(frame),
                "values": list(head["failure_case"]),
                "index": list(head["index"]),
            }
        )
    return groups


def _groups_polars(cases: Any) -> list[dict[str, Any]]:
    import polars as pl

    table = cases.group_by(list(_KEYS), maintain_order=True).agg(
        pl.len().alias("n"),
        pl.col("failure_case").head(MAX_EXAMPLES).alias("values"),
        pl.col("index").head(MAX_EXAMPLES).alias("index"),
    )
    return list(table.to_dicts())


def _groups(cases: Any) -> list[dict[str, Any]]:
    if type(cases).__module__.startswith("polars"):
        return _groups_polars(cases)
    return _groups_pandas(cases)


def _examples(group: dict[str, Any]) -> list[dict[str, Any]]:
    examples = []
    for value, index in zip(group["values"], group["index"], strict=True):
        example = {"index": plain_value(index), "value": plain_value(value)}
        examples.append(example)
    return examples


def _columns_of(value: Any) -> list[str]:
    # polars: a LazyFrame warns (PerformanceWarning) when asked for .columns.
    schema = getattr(value, "collect_schema", None)
    columns = schema().names() if schema is not None else getattr(value, "columns", None)
    return [str(c) for c in (columns if columns is not None else [])]


def _apply(
    expected: dict[tuple[Any, ...], CheckResult], groups: list[dict[str, Any]], value: Any
) -> None:
    columns = _columns_of(value)
    for group in groups:
        first = group["values"][0] if group["values"] else None
        key = _match_key(
            group["schema_context"], group["column"], group["check"], group["check_number"], first
        )
        result = expected.get(key)
        if result is None:
            column = group["column"]
            known = column is not None and column == column
            result = CheckResult(str(group["check"]), str(column) if known else None)
            expected[key] = result
        message = None
        examples = _examples(group)
        if key[0] == "present":
            message = f"column {key[1]!r} is missing; the artifact has columns: " + (
                ", ".join(columns) or "(none)"
            )
            examples = []
        elif key[0] == "strict":
            extra = [str(v) for v in group["values"]]
            message = f"columns not in the contract: {', '.join(extra)}"
            examples = []
        elif key[0] == "dtype":
            message = f"got {first}"
            examples = []
        result.fail(int(group["n"]), examples, message)
    for key, result in expected.items():
        if key[0] == "present" and result.status == "failed":
            for other in expected.values():
                if other is not result and other.column == key[1] and other.status == "passed":
                    other.status = "skipped"
                    other.message = "not evaluated: the column is missing"


def check_pandera(contract: Contract, value: Any, result: BoundaryResult) -> None:
    """Validate ``value`` against a pandera contract; fill ``result.checks``."""
    from pandera.config import ValidationDepth, config_context
    from pandera.errors import SchemaDefinitionError, SchemaError, SchemaErrors

    schema = pandera_schema(contract.schema)
    expected = _expected(schema)
    with config_context(validation_enabled=True, validation_depth=ValidationDepth.SCHEMA_AND_DATA):
        try:
            schema.validate(value, lazy=True)
        except SchemaErrors as exc:
            _apply(expected, _groups(exc.failure_cases), value)
        except SchemaDefinitionError as exc:
            expected[("definition",)] = CheckResult(
                "schema_definition", status="failed", failures=1, message=str(exc)
            )
        except Exception as exc:  # noqa: BLE001 - pandera may fail collecting failures
            result.note = _first_failure(schema, value, expected, exc, SchemaError)
    result.checks = list(expected.values())


def _first_failure(
    schema: Any,
    value: Any,
    expected: dict[tuple[Any, ...], CheckResult],
    lazy_error: Exception,
    schema_error: type[Exception],
) -> str | None:
    """Fall back on pandera's first failure when it cannot collect all of them.

    Returns:
        A note for the boundary's result, or None when nothing failed after all.
    """
    note = (
        f"pandera could not collect every failure ({type(lazy_error).__name__}); the first "
        "failure is reported and the other checks were not evaluated"
    )
    try:
        schema.validate(value, lazy=False)
    except schema_error as exc:
        check = getattr(exc, "check", None)
        check_name = check if isinstance(check, str) else _name(check) if check else "check"
        column = getattr(exc, "column_name", None)
        key = _match_key(None, column, check_name, getattr(exc, "check_index", None), column)
        found = expected.get(key) or CheckResult(
            check_name, None if column is None else str(column)
        )
        expected[key] = found
        found.fail(1, [], str(exc).splitlines()[0][:200])
    except Exception as exc:  # noqa: BLE001 - report whatever the schema library raised
        expected[("error",)] = CheckResult(
            "validation", status="failed", failures=1, message=f"{type(exc).__name__}: {exc}"
        )
    else:
        return None
    for result in expected.values():
        if result.status == "passed":
            result.status = "skipped"
            result.message = "not evaluated"
    return note
