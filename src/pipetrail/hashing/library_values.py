"""Built-in fingerprints of library types, found by qualified type name (never imported).

Each handler turns an instance into a type-tagged fingerprint object of its *state*:
what, together with the library's version (covered by the code fingerprint), decides
what the object does.

* numpy: arrays by dtype, shape and bytes (object arrays by their items), scalars by
  dtype and value, dtypes, ``Generator``/``RandomState`` by their bit-generator state;
* pandas ``DataFrame``/``Series``/``Index``, polars ``DataFrame``/``Series`` and pyarrow
  tables, batches and arrays: the digest of their Arrow IPC stream (schema, with pandas'
  index and dtype metadata, and every value); pyarrow schemas, fields and types;
* polars expressions and lazy frames: their serialized plan (refused when it holds a
  Python function, whose code the plan only names);
* pandas ``NA``; polars data types;
* scikit-learn estimators: class, ``get_params(deep=False)`` (nested estimators are
  fingerprinted the same way, which covers ``get_params(deep=True)``) and the fitted
  state (public attributes ending in ``_``, as scikit-learn names them);
* torch modules: class, ``training`` flag, every tensor of ``state_dict()`` and the
  public plain attributes of every submodule; tensors by dtype, shape and bytes;
* pydantic models: class and ``model_dump(mode="json")``.

Libraries are looked up in ``sys.modules`` or imported inside the handler: a value of
their type exists, so they are imported already. Nothing here runs at pipetrail import.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from pipetrail.errors import UnhashableValueError
from pipetrail.hashing.canonical import to_canonical_obj
from pipetrail.hashing.digest import digest_bytes
from pipetrail.hashing.fingerprint_types import qualified_type_name

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["BUILTIN_HANDLERS", "arrow_ipc_digest"]

# A Python function pickled inside a serialized polars plan starts with this marker.
_POLARS_PYTHON_FUNCTION = b"PLPYFN"


def _fp(value: Any) -> Any:
    from pipetrail.hashing.fingerprint import fingerprint_obj  # fingerprint imports this

    return fingerprint_obj(value)


def _refuse(value: Any, why: str) -> UnhashableValueError:
    return UnhashableValueError(f"value of type {qualified_type_name(type(value))} {why}")


# -- numpy ----------------------------------------------------------------------------------


def _ndarray(value: Any) -> Any:
    import numpy as np

    arr = np.ascontiguousarray(value)
    if arr.dtype.hasobject:
        if arr.dtype.names:
            raise _refuse(value, "has a structured dtype with object fields; use plain fields")
        # Object arrays (strings, mixed Python values) by their items, type-tagged.
        return {
            "$ndarray": arr.dtype.str,
            "shape": list(value.shape),
            "items": _fp(arr.ravel().tolist()),
        }
    out: dict[str, Any] = {
        "$ndarray": arr.dtype.str,
        # The original shape: ascontiguousarray turns a 0-d array into shape (1,).
        "shape": list(value.shape),
        "data": digest_bytes(arr.tobytes()),
    }
    if arr.dtype.names:
        # "|V64" says nothing about the fields; their names and types do.
        out["fields"] = str(arr.dtype.descr)
    return out


def _numpy_scalar(value: Any) -> Any:
    try:
        return {"$np": str(value.dtype), "v": to_canonical_obj(value.item())}
    except UnhashableValueError:
        raise _refuse(value, "cannot be fingerprinted (no canonical form of its value)") from None


def _numpy_dtype(value: Any) -> Any:
    return {"$dtype": str(value.descr) if value.names else value.str}


def _numpy_generator(value: Any) -> Any:
    return {"$rng": qualified_type_name(type(value)), "state": _fp(value.bit_generator.state)}


def _numpy_random_state(value: Any) -> Any:
    return {"$rng": qualified_type_name(type(value)), "state": _fp(value.get_state(legacy=False))}


# -- tables ---------------------------------------------------------------------------------


def arrow_ipc_digest(table: Any) -> str:
    """Return the digest of a pyarrow table's (or record batch's) IPC stream bytes."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write(table)
    return digest_bytes(sink.getvalue().to_pybytes())


def _arrow_of(value: Any, convert: Callable[[], Any]) -> str:
    if "pyarrow" not in sys.modules:
        try:
            import pyarrow  # noqa: F401 - only whether it can be imported
        except ImportError:
            raise _refuse(value, "needs pyarrow to be fingerprinted; install pyarrow") from None
    try:
        return arrow_ipc_digest(convert())
    except (TypeError, ValueError, NotImplementedError) as exc:  # ArrowInvalid is a ValueError
        # Mixed-type object columns, say: Arrow has no type for them.
        raise _refuse(value, f"cannot be fingerprinted: {type(exc).__name__}: {exc}") from None


def _pandas_frame(value: Any) -> Any:
    import pyarrow as pa

    return {"$pandas": "DataFrame", "ipc": _arrow_of(value, lambda: pa.Table.from_pandas(value))}


def _pandas_series(value: Any) -> Any:
    import pyarrow as pa

    # The name is kept apart: to_frame needs a column name, and None is a valid name.
    frame = value.to_frame(name="series")
    return {
        "$pandas": "Series",
        "name": _fp(value.name),
        "ipc": _arrow_of(value, lambda: pa.Table.from_pandas(frame)),
    }


def _pandas_index(value: Any) -> Any:
    import pandas as pd
    import pyarrow as pa

    frame = pd.DataFrame(index=value)
    return {"$pandas": "Index", "ipc": _arrow_of(value, lambda: pa.Table.from_pandas(frame))}


def _pandas_na(value: Any) -> Any:
    return {"$pandas": "NA"}


def _polars_frame(value: Any) -> Any:
    return {"$polars": "DataFrame", "ipc": _arrow_of(value, value.to_arrow)}


def _polars_series(value: Any) -> Any:
    return {
        "$polars": "Series",
        "name": value.name,
        "ipc": _arrow_of(value, lambda: value.to_frame().to_arrow()),
    }


def _polars_plan(value: Any, data: bytes) -> Any:
    if _POLARS_PYTHON_FUNCTION in data:
        raise _refuse(
            value,
            "holds a Python function (map_elements, map_batches, ...) that its plan only "
            "names; move the expression into the step body",
        )
    return {"$polars": type(value).__name__, "plan": digest_bytes(data)}


def _polars_expr(value: Any) -> Any:
    return _polars_plan(value, value.meta.serialize(format="binary"))


def _polars_lazy(value: Any) -> Any:
    return _polars_plan(value, value.serialize(format="binary"))


def _polars_dtype(value: Any) -> Any:
    return {"$polars": "DataType", "v": repr(value)}


def _arrow_table(value: Any) -> Any:
    return {"$arrow": type(value).__name__, "ipc": _arrow_of(value, lambda: value)}


def _arrow_array(value: Any) -> Any:
    import pyarrow as pa

    return {
        "$arrow": type(value).__name__,
        "ipc": _arrow_of(value, lambda: pa.table({"array": value})),
    }


def _arrow_schema(value: Any) -> Any:
    return {"$arrow": "Schema", "v": digest_bytes(value.serialize().to_pybytes())}


def _arrow_field(value: Any) -> Any:
    import pyarrow as pa

    return {"$arrow": "Field", "v": digest_bytes(pa.schema([value]).serialize().to_pybytes())}


def _arrow_type(value: Any) -> Any:
    import pyarrow as pa

    field = pa.field("type", value)
    return {"$arrow": "DataType", "v": digest_bytes(pa.schema([field]).serialize().to_pybytes())}


# -- models ---------------------------------------------------------------------------------


def _fitted_state(value: Any) -> dict[str, Any]:
    attributes = vars(value)
    return {
        name: attributes[name]
        for name in sorted(attributes)
        if name.endswith("_") and not name.startswith("_")
    }


def _sklearn_estimator(value: Any) -> Any:
    try:
        params = value.get_params(deep=False)
    except Exception as exc:  # noqa: BLE001 - a custom estimator's get_params may fail
        raise _refuse(value, f"failed to report its parameters: {exc!r}") from None
    return {
        "$sklearn": qualified_type_name(type(value)),
        "params": _fp(dict(params)),
        "fitted": _fp(_fitted_state(value)),
    }


def _sklearn_tree(value: Any) -> Any:
    # The fitted tree of a decision-tree estimator: its arrays are its whole state.
    return {"$sklearn": qualified_type_name(type(value)), "state": _fp(value.__getstate__())}


def _torch_tensor(value: Any) -> Any:
    torch = sys.modules["torch"]  # a tensor exists, so torch is imported

    flat = value.detach().cpu().contiguous().reshape(-1)
    raw = flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""
    return {"$tensor": str(value.dtype), "shape": list(value.shape), "data": digest_bytes(raw)}


def _torch_module(value: Any) -> Any:
    attributes: dict[str, Any] = {}
    for prefix, module in value.named_modules():
        plain = {k: v for k, v in vars(module).items() if not k.startswith("_")}
        attributes[prefix or "."] = {"$class": qualified_type_name(type(module)), **plain}
    return {
        "$torch": qualified_type_name(type(value)),
        "training": bool(value.training),
        "state": _fp(dict(value.state_dict())),
        "attributes": _fp(attributes),
    }


def _pydantic_model(value: Any) -> Any:
    try:
        dumped = value.model_dump(mode="json")
    except Exception as exc:  # noqa: BLE001 - pydantic raises its own serialization errors
        raise _refuse(value, f"has no JSON form: {exc}") from None
    return {"$model": qualified_type_name(type(value)), "v": _fp(dumped)}


BUILTIN_HANDLERS: tuple[tuple[tuple[str, ...], Callable[[Any], Any]], ...] = (
    (("numpy.ndarray",), _ndarray),
    (("numpy.generic",), _numpy_scalar),
    (("numpy.dtype",), _numpy_dtype),
    (("numpy.random.Generator", "numpy.random._generator.Generator"), _numpy_generator),
    (("numpy.random.RandomState", "numpy.random.mtrand.RandomState"), _numpy_random_state),
    (("pandas.DataFrame",), _pandas_frame),
    (("pandas.Series",), _pandas_series),
    (("pandas.Index",), _pandas_index),
    (("pandas._libs.missing.C_NAType", "pandas.NAType"), _pandas_na),
    (("polars.DataFrame",), _polars_frame),
    (("polars.Series",), _polars_series),
    (("polars.Expr",), _polars_expr),
    (("polars.LazyFrame",), _polars_lazy),
    (("polars.DataType",), _polars_dtype),
    (("pyarrow.lib._Tabular", "pyarrow.lib.Table", "pyarrow.lib.RecordBatch"), _arrow_table),
    (("pyarrow.lib.Array", "pyarrow.lib.ChunkedArray"), _arrow_array),
    (("pyarrow.lib.Schema",), _arrow_schema),
    (("pyarrow.lib.Field",), _arrow_field),
    (("pyarrow.lib.DataType",), _arrow_type),
    (("sklearn.base.BaseEstimator",), _sklearn_estimator),
    (("sklearn.tree._tree.Tree",), _sklearn_tree),
    (("torch.Tensor", "torch._C.TensorBase"), _torch_tensor),
    (("torch.nn.modules.module.Module",), _torch_module),
    (("pydantic.main.BaseModel",), _pydantic_model),
)
