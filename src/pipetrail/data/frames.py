"""The tables data operations accept: pandas and polars DataFrames, pyarrow Tables.

Owns recognizing a table, naming and checking its columns, reading columns as Arrow
arrays, taking rows by position (keeping the table's type) and the table's digest, which
is the one the ``parquet`` serializer records (see
:func:`pipetrail.store.serializers.parquet_format.table_value_digest`). Never imports
pandas, polars or pyarrow at module import time; a library is only touched once a value
of its type is given. Must not import the ledger or the execution layer.

pandas: rows keep their index labels (``DataFrame.take``), as ``DataFrame.sample`` does;
the index is not part of a row's identity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetrail.errors import DefinitionError
from pipetrail.store.serializers.parquet_format import library_of, table_value_digest

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Frame", "column_spec"]

_MAX_LISTED = 12


def column_spec(value: Any, what: str) -> tuple[str, ...]:
    """Return a column argument (``None``, a name or a list of names) as a tuple.

    Raises:
        DefinitionError: not a string or a list of strings.
    """
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        if len(set(value)) != len(value):
            raise DefinitionError(f"{what}={value!r} names a column twice; name each once")
        return tuple(value)
    raise DefinitionError(
        f"{what} must be a column name or a non-empty list of column names, got {value!r}"
    )


class Frame:
    """A table given to a data operation, whatever library built it.

    Args:
        value: a pandas DataFrame, a polars DataFrame or a pyarrow Table.
        caller: the public function, named in errors.

    Raises:
        DefinitionError: the value is not one of those, or its column names are not
            unique strings.
    """

    def __init__(self, value: Any, caller: str) -> None:
        library = library_of(value)
        if library is None:
            hint = ""
            if type(value).__name__ == "LazyFrame":
                hint = "; call .collect() on a polars LazyFrame first"
            raise DefinitionError(
                f"{caller}() takes a pandas or polars DataFrame or a pyarrow Table, not "
                f"{type(value).__module__}.{type(value).__qualname__}{hint}"
            )
        self.value = value
        self.library = library
        self.caller = caller
        names = [str(n) if library != "pandas" else n for n in self._raw_columns()]
        if not all(isinstance(n, str) for n in names):
            odd = next(n for n in names if not isinstance(n, str))
            raise DefinitionError(
                f"{caller}() needs string column names; column {odd!r} is a "
                f"{type(odd).__name__} (rename it, e.g. df.columns = df.columns.astype(str))"
            )
        if len(set(names)) != len(names):
            raise DefinitionError(f"{caller}() needs unique column names; {names!r} repeats one")
        self.columns: list[str] = names

    def _raw_columns(self) -> list[Any]:
        if self.library == "pyarrow":
            return list(self.value.column_names)
        return list(self.value.columns)

    @property
    def rows(self) -> int:
        """The number of rows."""
        if self.library == "pyarrow":
            return int(self.value.num_rows)
        if self.library == "polars":
            return int(self.value.height)
        return len(self.value)

    def check_columns(self, names: Sequence[str], what: str) -> None:
        """Raise unless every name is a column.

        Raises:
            DefinitionError: a name is not a column (the message lists the columns).
        """
        missing = [n for n in names if n not in self.columns]
        if missing:
            listed = ", ".join(repr(c) for c in self.columns[:_MAX_LISTED])
            more = (
                f" and {len(self.columns) - _MAX_LISTED} more"
                if len(self.columns) > _MAX_LISTED
                else ""
            )
            raise DefinitionError(
                f"{self.caller}(): {what} column {missing[0]!r} is not in the table; its "
                f"columns are {listed}{more}"
            )

    def arrow_columns(self, names: Sequence[str]) -> list[tuple[str, Any]]:
        """Return ``(name, pyarrow array)`` for the given columns (all when empty)."""
        import pyarrow as pa

        names = list(names) or self.columns
        if self.library == "pyarrow":
            table = self.value.select(names)
        elif self.library == "polars":
            table = self.value.select(names).to_arrow()
        else:
            table = pa.Table.from_pandas(self.value[names], preserve_index=False)
        return [(name, table.column(i)) for i, name in enumerate(names)]

    def take(self, positions: Any) -> Any:
        """Return the rows at ``positions`` (an ``int64`` numpy array), same type."""
        if self.library == "pyarrow":
            return self.value.take(positions)
        if self.library == "polars":
            return self.value[positions]
        return self.value.take(positions)

    def digest(self, value: Any | None = None) -> str:
        """Return the stored digest of this table (or of a table taken from it)."""
        return table_value_digest(self.value if value is None else value)
