"""Contract declarations: what a step's inputs and outputs must satisfy (pure, no I/O).

A :class:`Contract` pairs a *schema* with optional row-count bounds. The schema is one of:

* a pandera ``DataFrameSchema`` or ``DataFrameModel`` for pandas frames (kind ``pandera``);
* the same from ``pandera.polars`` for polars frames (kind ``pandera-polars``);
* a ``pyarrow.Schema`` for pyarrow tables and pandas frames (kind ``arrow``);
* a pydantic model class for dicts and configs (kind ``pydantic``);
* nothing, when only the row count is checked (kind ``rows``).

This module only *declares*: it recognizes a schema by the names of its classes, so it
imports none of those libraries, and it binds a step's ``contracts=`` to the step's
parameters and outputs (:func:`bind_contracts`), refusing at decoration time what can be
known wrong then: an unknown name, or a schema that cannot describe the annotated type.
Checking values and fingerprinting schemas live in :mod:`pipetrail.contracts`.
Must import nothing internal but :mod:`pipetrail.errors`.
"""

from __future__ import annotations

import collections.abc
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.errors import DefinitionError

if TYPE_CHECKING:
    import inspect
    from collections.abc import Callable, Mapping

__all__ = [
    "CONTRACT_KINDS",
    "Boundary",
    "Contract",
    "bind_contracts",
    "contract_kind",
    "qualified_name",
]

CONTRACT_KINDS = ("pandera", "pandera-polars", "arrow", "pydantic", "rows")

# What each kind can check, by the qualified names of the types it accepts. A type that is
# none of these and none of _KNOWN_TYPES is left to the check at run time.
_PANDAS_FRAME = "pandas.DataFrame"
_ACCEPTS: dict[str, tuple[str, ...]] = {
    "pandera": (_PANDAS_FRAME, "pandera.typing.pandas.DataFrame"),
    "pandera-polars": (
        "polars.DataFrame",
        "polars.LazyFrame",
        "pandera.typing.polars.DataFrame",
        "pandera.typing.polars.LazyFrame",
    ),
    "arrow": ("pyarrow.Table", "pyarrow.RecordBatch", _PANDAS_FRAME),
    "pydantic": (
        "builtins.dict",
        "collections.abc.Mapping",
        "collections.abc.MutableMapping",
        "pydantic.main.BaseModel",
    ),
}
_TABLES = (
    _PANDAS_FRAME,
    "polars.DataFrame",
    "polars.LazyFrame",
    "pyarrow.Table",
    "pyarrow.RecordBatch",
)
# What a row-count-only contract can count.
_SIZED = (*_TABLES, "builtins.list", "builtins.tuple", "numpy.ndarray", "pandas.Series")
_KNOWN_TYPES = frozenset(
    {
        *(f"builtins.{name}" for name in ("dict", "list", "tuple", "set", "frozenset")),
        *(f"builtins.{name}" for name in ("str", "bytes", "int", "float", "bool", "complex")),
        "builtins.NoneType",
        # A source reaches its step as a path: no contract kind can check a path itself.
        *(f"pathlib.{name}" for name in ("Path", "PurePath", "PosixPath", "WindowsPath")),
        "numpy.ndarray",
        "pandas.Series",
        *_TABLES,
        *_ACCEPTS["pydantic"],
    }
)
_DESCRIBED = {
    "pandera": "pandas DataFrames",
    "pandera-polars": "polars DataFrames and LazyFrames",
    "arrow": "pyarrow Tables and pandas DataFrames",
    "pydantic": "dicts (and instances of the model)",
    "rows": "anything with a length",
}


# Libraries whose classes are named by their top-level package: where a class is
# defined inside them (pandas.core.frame or pandas) changes between versions.
_BY_PACKAGE = frozenset({"pandas", "polars", "pyarrow", "numpy"})


def qualified_name(kind: type) -> str:
    """Return ``module.qualname`` of a class (``builtins.dict``, ``pandas.DataFrame``).

    Classes of pandas, polars, pyarrow and numpy are named by their package
    (``pyarrow.Table``), not by the private module defining them.
    """
    module = str(getattr(kind, "__module__", "?"))
    top = module.partition(".")[0]
    return f"{top if top in _BY_PACKAGE else module}.{getattr(kind, '__qualname__', '?')}"


def _mro_names(obj: Any) -> list[str]:
    cls = obj if isinstance(obj, type) else type(obj)
    return [qualified_name(base) for base in getattr(cls, "__mro__", (cls,))]


def contract_kind(schema: Any) -> str:
    """Return the kind of contract ``schema`` declares (one of :data:`CONTRACT_KINDS`).

    Raises:
        DefinitionError: ``schema`` is none of the supported schema types.
    """
    if schema is None:
        return "rows"
    names = _mro_names(schema)
    is_class = isinstance(schema, type)
    for name in names:
        module, _, cls = name.rpartition(".")
        if module.startswith("pandera.api.") and (
            (not is_class and cls == "DataFrameSchema") or (is_class and cls == "DataFrameModel")
        ):
            if module.startswith("pandera.api.pandas"):
                return "pandera"
            if module.startswith("pandera.api.polars"):
                return "pandera-polars"
    if not is_class and "pyarrow.Schema" in names:
        return "arrow"
    if is_class and "pydantic.main.BaseModel" in names:
        return "pydantic"
    if not is_class and "pydantic.main.BaseModel" in names:
        raise DefinitionError(
            f"a contract got an instance of the pydantic model {type(schema).__qualname__}; "
            "give the model class itself"
        )
    raise DefinitionError(
        f"{type(schema).__qualname__ if not is_class else schema.__qualname__} is not a "
        "contract schema; use a pandera DataFrameSchema or DataFrameModel (pandas or "
        "polars), a pyarrow.Schema, or a pydantic model class"
    )


def _check_rows(rows: Any) -> tuple[int | None, int | None] | None:
    if rows is None:
        return None
    bounds = (rows, rows) if isinstance(rows, int) and not isinstance(rows, bool) else rows
    if not isinstance(bounds, tuple | list) or len(bounds) != 2:
        raise DefinitionError(
            f"rows={rows!r} is not a row-count bound; give (min, max) with None for an "
            "open end, e.g. rows=(1, None), or an exact int"
        )
    low, high = bounds
    for bound in (low, high):
        if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool)):
            raise DefinitionError(f"rows={rows!r}: bounds must be ints or None")
        if bound is not None and bound < 0:
            raise DefinitionError(f"rows={rows!r}: bounds must not be negative")
    if low is not None and high is not None and low > high:
        raise DefinitionError(f"rows={rows!r}: the minimum is larger than the maximum")
    return (low, high)


@dataclass(frozen=True, eq=False)
class Contract:
    """A schema and checks that a step's input or output must satisfy.

    Attributes:
        schema: a pandera schema or model (pandas or polars), a ``pyarrow.Schema``, a
            pydantic model class, or None to check only the row count.
        rows: row-count bounds ``(min, max)``, either end None for open; an int means
            exactly that many rows. pandera has no row-count check of its own.
        kind: what ``schema`` is (set from it; see :data:`CONTRACT_KINDS`).

    Raises:
        DefinitionError: the schema is not supported, or ``rows`` is not a valid bound.

    Example:
        >>> Contract(pa.DataFrameSchema({"age": pa.Column(int, pa.Check.ge(0))}), rows=(1, None))
    """

    schema: Any = None
    rows: tuple[int | None, int | None] | None = None
    kind: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", _check_rows(self.rows))
        object.__setattr__(self, "kind", contract_kind(self.schema))
        if self.kind == "rows" and self.rows is None:
            raise DefinitionError(
                "Contract() needs a schema, row-count bounds (rows=(min, max)), or both"
            )
        if self.kind == "pydantic" and self.rows is not None:
            raise DefinitionError(
                f"rows={self.rows!r} cannot apply to the pydantic model "
                f"{self.schema.__qualname__}: it validates one mapping, which has no rows"
            )

    @property
    def describes(self) -> str:
        """The kind of values this contract can check, in words."""
        return _DESCRIBED[self.kind]

    def __repr__(self) -> str:
        schema = "None" if self.schema is None else type(self.schema).__qualname__
        if isinstance(self.schema, type):
            schema = self.schema.__qualname__
        return f"Contract({schema}, rows={self.rows!r}, kind={self.kind!r})"


@dataclass(frozen=True)
class Boundary:
    """One place a contract is checked: an input (parameter) or an output of a step.

    Attributes:
        direction: ``"input"`` or ``"output"``.
        name: the parameter or output name.
        contract: the contract checked there.
    """

    direction: str
    name: str
    contract: Contract

    @property
    def label(self) -> str:
        """``input:NAME`` or ``output:NAME``: the boundary's name in records."""
        return f"{self.direction}:{self.name}"


def _annotation_names(hint: Any) -> list[str] | None:
    """Qualified names of the types a hint allows; None when it says nothing useful."""
    if hint is None or hint is typing.Any or isinstance(hint, typing.TypeVar | str):
        return None
    origin = typing.get_origin(hint)
    if origin is typing.Union or (origin is not None and qualified_name(origin).endswith("Union")):
        names: list[str] = []
        for member in typing.get_args(hint):
            found = _annotation_names(member)
            if found is None:
                return None
            names.extend(found)
        return names
    if origin is typing.Annotated:
        return _annotation_names(typing.get_args(hint)[0])
    target = origin if origin is not None else hint
    if target is type(None):
        return ["builtins.NoneType"]
    if not isinstance(target, type):
        return None
    if "pydantic.main.BaseModel" in _mro_names(target):
        return ["pydantic.main.BaseModel"]  # any model: a pydantic contract validates it
    return [qualified_name(target)]


def _fits(kind: str, names: list[str]) -> bool:
    """False only when the annotation is known and the contract cannot check any of it."""
    accepted = _SIZED if kind == "rows" else _ACCEPTS[kind]
    for name in names:
        if name == "builtins.NoneType":
            continue  # Optional[...]: the other members decide
        if name in accepted or name not in _KNOWN_TYPES:
            return True  # a type we know nothing about is checked at run time
    return False


def _hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # noqa: BLE001 - unresolvable hints leave the check to run time
        return {}


def _output_hints(hints: dict[str, Any], outputs: tuple[str, ...]) -> dict[str, Any]:
    ret = hints.get("return")
    if ret is None:
        return {}
    if len(outputs) == 1:
        return {outputs[0]: ret}
    items = typing.get_args(ret) if typing.get_origin(ret) is tuple else ()
    if len(items) == len(outputs) and Ellipsis not in items:
        return dict(zip(outputs, items, strict=True))
    return {}


def bind_contracts(
    step_name: str,
    func: Callable[..., Any],
    signature: inspect.Signature,
    outputs: tuple[str, ...],
    contracts: Mapping[str, Any] | None,
) -> tuple[Boundary, ...]:
    """Bind ``@step(contracts=...)`` to the step's parameters and outputs.

    Args:
        step_name: the step's name, for messages.
        func: the step function (its type hints are read).
        signature: the function's signature.
        outputs: the step's output names.
        contracts: name -> :class:`Contract` or a bare schema; names are parameter names
            (checked before the call) or output names (checked after it).

    Returns:
        The boundaries, inputs first, each group in declaration order.

    Raises:
        DefinitionError: an unknown or ambiguous name, a value that is not a contract,
            or a contract that cannot check the annotated type of its parameter or output.
    """
    if not contracts:
        return ()
    if not isinstance(contracts, collections.abc.Mapping):
        raise DefinitionError(
            f"step {step_name!r}: contracts= must be a dict of name -> contract, got "
            f"{type(contracts).__qualname__}"
        )
    params = list(signature.parameters)
    hints = _hints(func)
    out_hints = _output_hints(hints, outputs)
    bound: list[Boundary] = []
    for name, value in contracts.items():
        in_params, in_outputs = name in params, name in outputs
        if in_params and in_outputs:
            raise DefinitionError(
                f"step {step_name!r}: contract name {name!r} is both a parameter and an output; "
                "rename the parameter or the output so the contract applies to one of them"
            )
        if not in_params and not in_outputs:
            raise DefinitionError(
                f"step {step_name!r} has no input or output named {name!r} for its contract; "
                f"parameters: {', '.join(params) or '(none)'}; outputs: {', '.join(outputs)}"
            )
        contract = value if isinstance(value, Contract) else None
        if contract is None:
            try:
                contract = Contract(value)
            except DefinitionError as exc:
                raise DefinitionError(f"step {step_name!r}, contract {name!r}: {exc}") from None
        direction = "input" if in_params else "output"
        hint = hints.get(name) if in_params else out_hints.get(name)
        names = _annotation_names(hint)
        if names is not None and not _fits(contract.kind, names):
            shown = " | ".join(n.removeprefix("builtins.") for n in names)
            raise DefinitionError(
                f"step {step_name!r}: the {contract.kind} contract on {direction} {name!r} checks "
                f"{contract.describes}, but {name!r} is annotated {shown}; use a contract for "
                "that type or fix the annotation"
            )
        bound.append(Boundary(direction, name, contract))
    bound.sort(key=lambda b: b.direction != "input")
    return tuple(bound)
