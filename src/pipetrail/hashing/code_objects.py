"""Looking at objects without being fooled by them: attribute access and instance state.

Some objects answer any attribute name (``polars.col``, ``unittest.mock`` objects, any
``__getattr__`` that returns something for everything), and some claim to be of another
class (a ``Mock(spec=...)``). The code fingerprint reads objects only through these
helpers, which look at what an object really holds.
"""

from __future__ import annotations

import abc
import sys
import types
import typing
from typing import Any

__all__ = [
    "STATELESS_BASES",
    "class_values",
    "held_by",
    "home_modules",
    "instance_state",
    "is_typing_object",
    "own_attr",
    "pipetrail_func",
    "real_class",
]

# Non-project base classes that add no state of their own to an instance.
STATELESS_BASES: frozenset[type] = frozenset({object, abc.ABC, typing.Generic})
_TYPING_MODULES = frozenset({"typing", "typing_extensions"})


def own_attr(obj: Any, name: str) -> Any:
    """Return ``obj.name`` by the ordinary lookup only, or None.

    ``object.__getattribute__`` finds what the instance or its class holds and never
    calls a ``__getattr__`` fallback, so synthetic attributes are not seen.
    """
    try:
        return object.__getattribute__(obj, name)
    except AttributeError:
        return None
    except Exception:  # noqa: BLE001 - a property of user code may raise anything
        return None


def pipetrail_func(obj: Any) -> types.FunctionType | None:
    """Return the function a ``@step`` or ``@pipeline`` object wraps, if ``obj`` is one."""
    if isinstance(obj, type):
        return None
    inner = own_attr(obj, "__pipetrail_func__")
    if isinstance(inner, types.FunctionType) and real_class(inner):
        return inner
    return None


def real_class(obj: Any) -> bool:
    """Return False for objects that claim another class (``Mock(spec=...)``, proxies)."""
    try:
        return type(obj) is obj.__class__
    except Exception:  # noqa: BLE001 - __class__ of a proxy may be anything
        return False


def is_typing_object(obj: Any) -> bool:
    """Return whether ``obj`` is a type annotation construct (``list[int]``, ``int | None``)."""
    cls = type(obj)
    return cls is types.GenericAlias or cls is types.UnionType or cls.__module__ in _TYPING_MODULES


def instance_state(obj: Any) -> dict[str, Any]:
    """Return an instance's attributes: its ``__dict__`` and its filled ``__slots__``."""
    state: dict[str, Any] = {}
    attributes = own_attr(obj, "__dict__")
    if isinstance(attributes, dict):
        state.update(attributes)
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot in ("__dict__", "__weakref__"):
                continue
            name = slot
            if slot.startswith("__") and not slot.endswith("__"):
                name = f"_{cls.__name__.lstrip('_')}{slot}"  # a private, mangled slot
            try:
                state[name] = object.__getattribute__(obj, name)
            except AttributeError:
                continue  # a slot never set
    return state


def home_modules(obj: Any) -> list[str]:
    """Return the modules that may define ``obj``, most specific first.

    Taken from the object's own ``__module__``, its class's module and, for a bound
    method, its object's class's module, each with its parent packages.
    """
    candidates: list[str] = []
    owner = own_attr(obj, "__self__")
    for raw in (own_attr(obj, "__module__"), type(obj).__module__, type(owner).__module__):
        if not isinstance(raw, str):
            continue
        parts = raw.split(".")
        for end in range(len(parts), 0, -1):
            name = ".".join(parts[:end])
            if name not in candidates:
                candidates.append(name)
    return candidates


def held_by(module_name: str, obj: Any) -> str | None:
    """Return ``module.attribute`` when the imported module holds ``obj`` itself."""
    module = sys.modules.get(module_name)
    if module is None:
        return None
    for attribute, value in list(vars(module).items()):
        if value is obj:
            return f"{module_name}.{attribute}"
    return None


# Metaclasses whose classes hold only what their body says (plus ABC bookkeeping).
_PLAIN_METACLASSES = (type, abc.ABCMeta)


def class_values(cls: type) -> dict[str, Any]:
    """Return the plain values a project class holds (``LIMIT = 3``; not methods).

    Methods, properties and other descriptors are code, covered by the class's source.
    Only classes made by ``type`` or ``ABCMeta`` are read: other metaclasses (enums,
    pydantic models, ORMs) keep their own machinery in the class namespace.
    """
    if type(cls) not in _PLAIN_METACLASSES:
        return {}
    values: dict[str, Any] = {}
    for name, value in vars(cls).items():
        if name.startswith("__") or name == "_abc_impl":
            continue
        if isinstance(value, type) or callable(value) or hasattr(type(value), "__get__"):
            continue  # methods, nested classes, classmethod/staticmethod/property objects
        values[name] = value
    return values
