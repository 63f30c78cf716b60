"""Checking ``pyarrow.Schema`` contracts on pyarrow tables and pandas frames.

For every field of the contract's schema, three checks: the column is present
(``column_in_dataframe``), has the field's type (``type``), and, for a field declared
``nullable=False``, holds no nulls (``not_nullable``, with the first failing row indexes).
Columns the contract does not name are allowed. ``string`` and ``large_string`` (and the
binary pair) count as the same type: pandas and pyarrow choose between them by size, not
by meaning. A pandas frame's column types are those pyarrow infers for it
(``pyarrow.Schema.from_pandas``). pyarrow is imported here, lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.contracts.results import MAX_EXAMPLES, CheckResult, plain_value

if TYPE_CHECKING:
    from pipetrail.contracts.results import BoundaryResult
    from pipetrail.core.contract import Contract

__all__ = ["check_arrow"]

_SAME = {"large_string": "string", "large_binary": "binary", "large_utf8": "string"}


def _type_name(arrow_type: Any) -> str:
    text = str(arrow_type)
    return _SAME.get(text, text)


def _null_rows(column: Any) -> tuple[int, list[dict[str, Any]]]:
    import pyarrow.compute as pc

    count = int(column.null_count)
    if not count:
        return 0, []
    rows = pc.indices_nonzero(pc.is_null(column))[:MAX_EXAMPLES].to_pylist()
    return count, [{"index": row, "value": None} for row in rows]


def check_arrow(contract: Contract, value: Any, result: BoundaryResult) -> None:
    """Check ``value`` (a pyarrow Table or RecordBatch, or a pandas DataFrame)."""
    import pyarrow as pa

    schema = contract.schema
    if isinstance(value, pa.Table | pa.RecordBatch):
        actual = value.schema
        columns = {name: value.column(name) for name in actual.names}
        index_of: Any = None
    else:  # a pandas DataFrame (checked by the caller)
        actual = pa.Schema.from_pandas(value, preserve_index=False)
        columns = {str(name): value[name] for name in value.columns}
        index_of = value.index
    present = [str(name) for name in actual.names]
    for field in schema:
        found = CheckResult("column_in_dataframe", field.name)
        typed = CheckResult(f"type({_type_name(field.type)})", field.name)
        result.checks.extend([found, typed])
        nulls = None if field.nullable else CheckResult("not_nullable", field.name)
        if nulls is not None:
            result.checks.append(nulls)
        if field.name not in columns:
            found.fail(1, [], "column is missing; the artifact has columns: " + ", ".join(present))
            for skipped in (typed, nulls):
                if skipped is not None:
                    skipped.status = "skipped"
                    skipped.message = "not evaluated: the column is missing"
            continue
        got = actual.field(field.name).type
        if _type_name(got) != _type_name(field.type):
            typed.fail(1, [], f"got {got}")
        if nulls is not None:
            column = columns[field.name]
            if index_of is None:
                count, examples = _null_rows(column)
            else:
                mask = column.isna()
                count = int(mask.sum())
                labels = index_of[mask.to_numpy()][:MAX_EXAMPLES]
                examples = [{"index": plain_value(label), "value": None} for label in labels]
            if count:
                nulls.fail(count, examples, None)
