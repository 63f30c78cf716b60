"""The ``parquet`` serializer: pandas DataFrames, pyarrow Tables and polars DataFrames.

Owns table storage. The stored bytes (``blob``) are Parquet written by pyarrow with fixed
settings (zstd level 3, dictionary encoding, statistics, format 2.6, data page v1, 1 Mi
rows per row group, Arrow schema embedded, single-threaded), so the same table gives the
same bytes with the same library versions. The artifact ``digest`` is taken over a
normalized form instead (see :mod:`pipetrail.store.serializers.table_normalize`): equal
data gives the same digest whether pandas, pyarrow or polars produced it.

Conversion to Arrow: a pandas DataFrame keeps a non-default index as columns (named after
the index, or ``__index_level_0__`` when unnamed); a default ``RangeIndex`` (start 0,
step 1, no name) is dropped. pandas' own schema metadata (index, extension dtypes, column
index) moves to ``meta["pandas"]`` so the blob holds no pandas version, and loading
restores the DataFrame exactly. Loading returns the library's type that was dumped.

Every stored table is profiled (:mod:`pipetrail.store.serializers.table_profile`): the
profile is stored as canonical JSON and linked from ``meta["profile"]`` (``digest`` and
``size``); :func:`linked_profiles` describes those objects for the run record.

pandas, pyarrow and polars are imported lazily; :meth:`ParquetSerializer.handles` only
looks in ``sys.modules``. Imports only ``pipetrail.hashing``, ``pipetrail.errors`` and the
serializer modules.
"""

from __future__ import annotations

import importlib
import io
import json
import sys
from typing import TYPE_CHECKING, Any

from pipetrail.errors import SerializationError
from pipetrail.store.serializers.base import FORMAT_VERSION_KEY, StoredArtifact
from pipetrail.store.serializers.table_normalize import (
    normalize_table,
    schema_entries,
    schema_fingerprint,
    table_digest,
)
from pipetrail.store.serializers.table_profile import profile_bytes, profile_table

if TYPE_CHECKING:
    from pipetrail.store.base import ContentStore

__all__ = ["ParquetSerializer", "library_of", "linked_profiles", "table_value_digest"]

_LIBRARIES = (
    ("pandas", "DataFrame", "pandas.DataFrame"),
    ("pyarrow", "Table", "pyarrow.Table"),
    ("polars", "DataFrame", "polars.DataFrame"),
)
# Dropped from the stored pandas metadata: they describe the writer, not the data.
_PANDAS_WRITER_KEYS = ("creator", "pandas_version")


def library_of(value: Any) -> str | None:
    """Return which supported library ``value`` is a table of, without importing any."""
    for module_name, class_name, _ in _LIBRARIES:
        module = sys.modules.get(module_name)
        cls = getattr(module, class_name, None) if module is not None else None
        if isinstance(cls, type) and isinstance(value, cls):
            return module_name
    return None


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise SerializationError(
            f"Loading or storing tables needs {name.split('.')[0]}; install it with "
            "pip install 'pipetrail[tables]' (and 'pipetrail[polars]' for polars)."
        ) from exc


def _to_arrow(value: Any, library: str) -> tuple[Any, dict[str, Any] | None]:
    """Return ``(pyarrow.Table, pandas metadata or None)`` for a supported table."""
    pa = _import("pyarrow")
    if library == "pyarrow":
        return value, None
    if library == "polars":
        return value.to_arrow(), None
    pd = _import("pandas")
    index = value.index
    default_index = (
        isinstance(index, pd.RangeIndex)
        and index.start == 0
        and index.step == 1
        and index.name is None
    )
    table = pa.Table.from_pandas(value, preserve_index=not default_index)
    pandas_meta = {
        key: item
        for key, item in (table.schema.pandas_metadata or {}).items()
        if key not in _PANDAS_WRITER_KEYS
    }
    return table.replace_schema_metadata(None), pandas_meta


def _parquet_bytes(table: Any) -> bytes:
    pq = _import("pyarrow.parquet")
    buffer = io.BytesIO()
    pq.write_table(
        table,
        buffer,
        row_group_size=1024 * 1024,
        version="2.6",
        data_page_version="1.0",
        use_dictionary=True,
        compression="zstd",
        compression_level=3,
        write_statistics=True,
        store_schema=True,
        write_page_index=False,
    )
    return buffer.getvalue()


def linked_profiles(records: list[StoredArtifact]) -> list[tuple[StoredArtifact, str]]:
    """Return ``(artifact, "profile")`` for the profile each stored table links to.

    A profile is a ``json`` artifact (it loads as a dict); records without a profile
    (other formats, tables stored before profiles existed) give nothing.
    """
    found: list[tuple[StoredArtifact, str]] = []
    for record in records:
        link = record.meta.get("profile") if record.serializer == "parquet" else None
        if isinstance(link, dict) and isinstance(link.get("digest"), str):
            found.append(
                (
                    StoredArtifact(
                        digest=link["digest"],
                        blob=link["digest"],
                        serializer="json",
                        type_name="builtins.dict",
                        size=int(link.get("size", 0)),
                        meta={"python_type": "dict", FORMAT_VERSION_KEY: 1},
                    ),
                    "profile",
                )
            )
    return found


def table_value_digest(value: Any) -> str:
    """Return the digest :meth:`ParquetSerializer.dump` gives ``value``, storing nothing.

    Only the normalized form is built and hashed (no Parquet is written), so it costs
    about what the digest part of a dump costs.

    Raises:
        SerializationError: the value is not a supported table, or a needed library is
            missing.
    """
    table, _ = _to_arrow(value, _library(value, "have a table digest"))
    return table_digest(normalize_table(table))


def _library(value: Any, what: str) -> str:
    """The table library of ``value``; raise naming ``what`` only tables can do."""
    library = library_of(value)
    if library is None:
        raise SerializationError(
            f"only pandas/polars DataFrames and pyarrow Tables {what}, not "
            f"{type(value).__qualname__}; convert it to one of those first."
        )
    return library


class ParquetSerializer:
    """Stores tables as Parquet with a library-independent digest (see the module docstring)."""

    name = "parquet"
    version = 1

    def handles(self, value: Any) -> bool:
        """Return whether ``value`` is a pandas/polars DataFrame or a pyarrow Table."""
        return library_of(value) is not None

    def dump(self, value: Any, store: ContentStore) -> StoredArtifact:
        """Store the table as Parquet; the digest is over its normalized form.

        Raises:
            SerializationError: the value is not a supported table, or a needed library is
                missing.
        """
        library = _library(value, "are stored as Parquet")
        table, pandas_meta = _to_arrow(value, library)
        normalized = normalize_table(table)
        entries = schema_entries(normalized)
        data = _parquet_bytes(table)
        blob = store.put_bytes(data)
        meta: dict[str, Any] = {
            "schema": entries,
            "rows": normalized.num_rows,
            "columns": normalized.num_columns,
            "nulls": {
                name: column.null_count
                for name, column in zip(normalized.schema.names, normalized.columns, strict=True)
            },
            "schema_fingerprint": schema_fingerprint(entries),
            "library": library,
            FORMAT_VERSION_KEY: self.version,
        }
        if pandas_meta is not None:
            meta["pandas"] = pandas_meta
        # Derived data, linked but not read by load: no reading or cache key covers it.
        profile = profile_bytes(profile_table(normalized))
        meta["profile"] = {"digest": store.put_bytes(profile), "size": len(profile)}
        type_name = next(full for module, _, full in _LIBRARIES if module == library)
        return StoredArtifact(
            digest=table_digest(normalized),
            blob=blob,
            serializer=self.name,
            type_name=type_name,
            size=len(data),
            meta=meta,
        )

    def load(self, record: StoredArtifact, store: ContentStore) -> Any:
        """Return the table as the library type that was stored."""
        pa = _import("pyarrow")
        pq = _import("pyarrow.parquet")
        local = store.local_path(record.blob)
        source = str(local) if local is not None else pa.BufferReader(store.get_bytes(record.blob))
        table = pq.read_table(source, use_pandas_metadata=False)
        library = record.meta.get("library", "pyarrow")
        if library == "pandas":
            pandas_meta = json.dumps(record.meta.get("pandas") or {}).encode("utf-8")
            table = table.replace_schema_metadata({b"pandas": pandas_meta})
            return table.to_pandas()
        if library == "polars":
            return _import("polars").from_arrow(table)
        return table
