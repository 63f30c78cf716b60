"""Contract fingerprints: one canonical digest per contract, part of the step's cache key.

What each kind's digest covers:

* pandera (pandas or polars): the schema's own serialized form (``to_json``) where pandera
  can produce it, plus a description read from the schema object (every column's dtype,
  nullability, uniqueness, presence and checks with their statistics, frame-level checks
  and options), plus the code fingerprint of every check function that is not pandera's
  own: pandera leaves custom checks out of its serialized form, so without their code two
  different contracts would share a digest;
* ``pyarrow.Schema``: its IPC-serialized bytes (field names, types, nullability, metadata);
* pydantic model: ``model_json_schema()`` plus the code fingerprint of the class
  (validators are code, not schema);

and always the row-count bounds and the kind. Anything that cannot be fingerprinted is
reported in ``unhashable`` so the runner forces a cache miss instead of a false hit.

This module also registers, at import, the value fingerprints of contracts and pandera
schemas (see :mod:`pipetrail.hashing.fingerprint_types`): a step whose code or decorator
reads a module-level ``Contract`` or pandera schema is keyed by that contract's digest.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any

from pipetrail.core.contract import Contract
from pipetrail.errors import UnhashableValueError
from pipetrail.hashing import digest_bytes, digest_value
from pipetrail.hashing.code import code_fingerprint
from pipetrail.hashing.fingerprint_types import register_fingerprint, register_fingerprint_by_name

__all__ = ["FINGERPRINT_FORMAT", "ContractFingerprint", "fingerprint_contract", "pandera_schema"]

FINGERPRINT_FORMAT = "pt-contract1"


@dataclass(frozen=True)
class ContractFingerprint:
    """A contract's digest, and why it may not be trusted.

    Attributes:
        digest: the canonical digest of the contract.
        unhashable: reasons part of the contract could not be fingerprinted (a custom
            check whose code cannot be read, say); non-empty forces a cache miss.
    """

    digest: str
    unhashable: tuple[str, ...] = ()


def pandera_schema(schema: Any) -> Any:
    """Return a pandera ``DataFrameSchema`` for a schema or a ``DataFrameModel`` class."""
    if isinstance(schema, type):
        model: Any = schema  # a DataFrameModel class
        return model.to_schema()
    return schema


def _is_custom(func: Any) -> bool:
    module = getattr(func, "__module__", None) or ""
    return not module.startswith("pandera")


def _check_description(check: Any, unhashable: list[str], where: str) -> dict[str, Any]:
    func = getattr(check, "_check_fn", None)
    code = None
    if func is not None and _is_custom(func):
        found = code_fingerprint(func)
        code = found.digest
        unhashable.extend(f"contract check {where}: {reason}" for reason in found.unhashable)
    return {
        "name": getattr(check, "name", None),
        "error": getattr(check, "error", None),
        "statistics": repr(getattr(check, "statistics", None)),
        "element_wise": getattr(check, "element_wise", None),
        "ignore_na": getattr(check, "ignore_na", None),
        "groupby": repr(getattr(check, "groupby", None)),
        "code": code,
    }


def _column_description(name: Any, column: Any, unhashable: list[str]) -> dict[str, Any]:
    return {
        "name": str(name),
        "dtype": str(getattr(column, "dtype", None)),
        "nullable": getattr(column, "nullable", None),
        "unique": getattr(column, "unique", None),
        "required": getattr(column, "required", None),
        "regex": getattr(column, "regex", None),
        "coerce": getattr(column, "coerce", None),
        "checks": [
            _check_description(check, unhashable, f"{name}[{i}]")
            for i, check in enumerate(getattr(column, "checks", None) or [])
        ],
    }


def _pandera_description(schema: Any, unhashable: list[str]) -> dict[str, Any]:
    index = getattr(schema, "index", None)
    return {
        "columns": [
            _column_description(name, column, unhashable)
            for name, column in (schema.columns or {}).items()
        ],
        "checks": [
            _check_description(check, unhashable, f"frame[{i}]")
            for i, check in enumerate(schema.checks or [])
        ],
        "index": None if index is None else _column_description("<index>", index, unhashable),
        "unique": repr(getattr(schema, "unique", None)),
        "strict": repr(getattr(schema, "strict", None)),
        "ordered": getattr(schema, "ordered", None),
        "coerce": getattr(schema, "coerce", None),
        "dtype": str(getattr(schema, "dtype", None)),
    }


def _pandera_serialized(schema: Any) -> Any:
    with warnings.catch_warnings():
        # pandera warns that it skips custom checks; their code is covered separately.
        warnings.simplefilter("ignore")
        try:
            return json.loads(schema.to_json())
        except Exception:  # noqa: BLE001 - some dtypes have no serialized form
            return None


def _schema_part(contract: Contract, unhashable: list[str]) -> Any:
    kind = contract.kind
    if kind in ("pandera", "pandera-polars"):
        schema = pandera_schema(contract.schema)
        return {
            "serialized": _pandera_serialized(schema),
            "description": _pandera_description(schema, unhashable),
        }
    if kind == "arrow":
        return digest_bytes(contract.schema.serialize().to_pybytes())
    if kind == "pydantic":
        model = contract.schema
        try:
            json_schema: Any = model.model_json_schema()
        except Exception as exc:  # noqa: BLE001 - arbitrary field types may not have one
            json_schema = {"$error": f"{type(exc).__name__}"}
        code = code_fingerprint(model)
        unhashable.extend(f"contract model {model.__qualname__}: {r}" for r in code.unhashable)
        return {"json_schema": json_schema, "code": code.digest}
    return None


def fingerprint_contract(contract: Contract) -> ContractFingerprint:
    """Return the canonical digest of a contract (see the module docstring)."""
    unhashable: list[str] = []
    schema = _schema_part(contract, unhashable)
    digest = digest_value(
        {
            "format": FINGERPRINT_FORMAT,
            "kind": contract.kind,
            "rows": list(contract.rows) if contract.rows is not None else None,
            "schema": schema,
        }
    )
    return ContractFingerprint(digest, tuple(unhashable))


def _trusted(found: ContractFingerprint) -> str:
    if found.unhashable:
        raise UnhashableValueError("; ".join(found.unhashable))
    return found.digest


def _pandera_frame_value(schema: Any) -> Any:
    return {"$pandera": _trusted(fingerprint_contract(Contract(schema)))}


def _pandera_component_value(component: Any) -> Any:
    unhashable: list[str] = []
    name = getattr(component, "name", None)
    description = _column_description(name, component, unhashable)
    return {
        "$pandera": type(component).__qualname__,
        "v": _trusted_description(description, unhashable),
    }


def _pandera_check_value(check: Any) -> Any:
    unhashable: list[str] = []
    description = _check_description(check, unhashable, "check")
    return {"$pandera": "Check", "v": _trusted_description(description, unhashable)}


def _trusted_description(description: dict[str, Any], unhashable: list[str]) -> str:
    if unhashable:
        raise UnhashableValueError("; ".join(unhashable))
    return digest_value(description)


register_fingerprint(Contract, lambda contract: _trusted(fingerprint_contract(contract)))
register_fingerprint_by_name(
    ("pandera.api.dataframe.container.DataFrameSchema", "pandera.DataFrameSchema"),
    _pandera_frame_value,
)
register_fingerprint_by_name(
    ("pandera.api.base.schema.BaseSchema", "pandera.BaseSchema"), _pandera_component_value
)
register_fingerprint_by_name(
    ("pandera.api.base.checks.BaseCheck", "pandera.BaseCheck"), _pandera_check_value
)
