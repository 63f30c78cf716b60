"""Arrow type strings (as recorded in table artifact schemas) to SQL-style type names.

Table artifacts record ``meta["schema"] = [{"name", "type"}]`` where ``type`` is the
text pyarrow prints (``int64``, ``timestamp[ns, tz=UTC]``, ``list<item: string>``,
``struct<a: int64, b: string>``, ``dictionary<values=string, ordered=0>``). OpenLineage's
schema facet takes free text; these SQL names are what lineage UIs show for other sources.
Nested structs keep their fields. Text that is not understood is kept, upper-cased.
Pure: no pyarrow import, so exports work without the ``tables`` extra.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["schema_fields", "sql_type"]

_SIMPLE = {
    "null": "NULL",
    "bool": "BOOLEAN",
    "int8": "TINYINT",
    "int16": "SMALLINT",
    "int32": "INTEGER",
    "int64": "BIGINT",
    "uint8": "UTINYINT",
    "uint16": "USMALLINT",
    "uint32": "UINTEGER",
    "uint64": "UBIGINT",
    "halffloat": "HALF_FLOAT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "string": "STRING",
    "large_string": "STRING",
    "string_view": "STRING",
    "binary": "BINARY",
    "large_binary": "BINARY",
    "binary_view": "BINARY",
    "month_interval": "INTERVAL",
    "day_time_interval": "INTERVAL",
    "month_day_nano_interval": "INTERVAL",
}
_PREFIXES = (
    ("date32", "DATE"),
    ("date64", "DATE"),
    ("time32", "TIME"),
    ("time64", "TIME"),
    ("duration", "INTERVAL"),
    ("fixed_size_binary", "BINARY"),
)
_DECIMAL = re.compile(r"decimal(?:32|64|128|256)\((\d+), (-?\d+)\)")
_GENERIC = re.compile(r"^(\w+)<(.*)>(\[\d+\])?$")


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside ``<>``, ``()`` or ``[]``."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        if char in "<([":
            depth += 1
        elif char in ">)]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def _named(part: str) -> tuple[str, str]:
    name, sep, type_text = part.partition(": ")
    return (name, type_text) if sep else ("", part)


def sql_type(arrow_type: str) -> str:
    """Return the SQL-style name of an Arrow type string (``int64`` -> ``BIGINT``)."""
    text = arrow_type.strip()
    if text in _SIMPLE:
        return _SIMPLE[text]
    if text.startswith("timestamp["):
        return "TIMESTAMP WITH TIME ZONE" if "tz=" in text else "TIMESTAMP"
    for prefix, name in _PREFIXES:
        if text.startswith(prefix):
            return name
    decimal = _DECIMAL.fullmatch(text)
    if decimal:
        return f"DECIMAL({decimal.group(1)}, {decimal.group(2)})"
    generic = _GENERIC.match(text)
    if generic:
        kind, inner = generic.group(1), generic.group(2)
        parts = _split_top(inner)
        if kind in ("list", "large_list", "list_view", "large_list_view", "fixed_size_list"):
            return f"ARRAY<{sql_type(_named(parts[0])[1])}>" if parts else "ARRAY"
        if kind == "map" and len(parts) == 2:
            return f"MAP<{sql_type(parts[0])}, {sql_type(parts[1])}>"
        if kind == "struct":
            inner_types = ", ".join(f"{n}: {sql_type(t)}" for n, t in map(_named, parts))
            return f"STRUCT<{inner_types}>"
        if kind == "dictionary":
            for part in parts:
                if part.startswith("values="):
                    return sql_type(part[len("values=") :])
    return text.upper()


def _field(name: str, arrow_type: str, position: int) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": name,
        "type": sql_type(arrow_type),
        "ordinal_position": position,
    }
    generic = _GENERIC.match(arrow_type.strip())
    if generic and generic.group(1) == "struct":
        entry["fields"] = [
            _field(n, t, i) for i, (n, t) in enumerate(map(_named, _split_top(generic.group(2))), 1)
        ]
    return entry


def schema_fields(schema: list[dict[str, str]]) -> list[dict[str, Any]]:
    """Return OpenLineage schema facet fields for a recorded ``[{"name", "type"}]`` schema."""
    return [_field(col["name"], col["type"], i) for i, col in enumerate(schema, 1)]
