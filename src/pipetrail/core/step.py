"""``@step``: a plain Python function declared as a unit of work that pipetrail records.

A step is pure metadata around the user's function: its name, version, cache policy and
output names. Called inside a ``@pipeline`` function it adds a node to the graph being
built and returns placeholders; called anywhere else it simply runs the function, so
steps stay testable as ordinary Python.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, overload

from pipetrail.core.classification import step_labels
from pipetrail.core.graph import current_builder
from pipetrail.core.resources import Resources, parse_resources
from pipetrail.errors import DefinitionError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from pipetrail.core.contract import Boundary

__all__ = ["MAX_NODE_NAME_LENGTH", "Step", "StepOptions", "step", "validate_node_name"]

P = ParamSpec("P")
R = TypeVar("R")

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
# Node names go into node ids (``train[lr-0.1]``), exports and command lines: no '/', ':',
# brackets or spaces. An all-digit name would read as a call position (``train[1]``).
_NODE_NAME_RE = re.compile(r"^[A-Za-z0-9_.=+,-]+$")
MAX_NODE_NAME_LENGTH = 100


def validate_node_name(step_name: str, name: object) -> str:
    """Return ``name`` if it can name a call of step ``step_name``.

    Raises:
        DefinitionError: the name is not text, empty, too long, all digits, or holds a
            character other than letters, digits and ``_ . = + , -``.
    """
    if not isinstance(name, str):
        raise DefinitionError(
            f"step {step_name!r}: a node name must be text, got {type(name).__name__} "
            f'({name!r}); pass a string such as f"lr-{{c}}"'
        )
    problem = None
    if not name:
        problem = "is empty"
    elif len(name) > MAX_NODE_NAME_LENGTH:
        problem = f"is {len(name)} characters long (at most {MAX_NODE_NAME_LENGTH})"
    elif not _NODE_NAME_RE.fullmatch(name):
        problem = "may hold only letters, digits and '_', '.', '=', '+', ',', '-'"
    elif name.isdigit():
        problem = "is all digits, which reads as a call position; add a letter"
    if problem is not None:
        raise DefinitionError(
            f"step {step_name!r}: node name {name!r} {problem}; node names label one call "
            "of a step inside a pipeline"
        )
    return name


@dataclass(frozen=True)
class StepOptions:
    """What ``@step(...)`` declares about a function.

    Attributes:
        name: the step's name in records (defaults to the function name).
        version: bump it to invalidate cached results on purpose.
        cache: ``False`` always executes the step.
        outputs: names of the outputs when the step returns several (a tuple).
        allow_pickle: trust this step's outputs to be stored with pickle when no safe
            serializer handles their type. Pickle runs code when loaded: opt in only for
            artifacts you produce yourself.
        contracts: the contracts checked on inputs (before the call) and outputs (after
            it), bound to parameter and output names (see :mod:`pipetrail.core.contract`).
        classification: output name -> its declared label (see
            :mod:`pipetrail.core.classification`); outputs not named inherit the
            strictest label of the step's inputs.
        retries: how many times to execute the step again when it fails (it raised, or
            the worker process running it died); every failed attempt is recorded in
            the step's event. Not part of the cache key.
        resources: what the step asks for to run (``cpu``, ``memory`` in bytes,
            ``gpu``), normalized (see :mod:`pipetrail.core.resources`); executors
            schedule by it. Not part of the cache key.
    """

    name: str
    version: str | None = None
    cache: bool = True
    outputs: tuple[str, ...] = ("output",)
    allow_pickle: bool = False
    contracts: tuple[Boundary, ...] = ()
    classification: tuple[tuple[str, str], ...] = ()
    retries: int = 0
    resources: Resources = ()


class Step(Generic[P, R]):
    """A function wrapped by ``@step``. Calling it inside a pipeline builds the graph."""

    def __init__(self, func: Callable[P, R], options: StepOptions) -> None:
        self.func = func
        self.options = options
        self.signature = inspect.signature(func)
        self.__pipetrail_func__ = func
        functools.update_wrapper(self, func)
        for param in self.signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise DefinitionError(
                    f"step {options.name!r} takes *{param.name}; steps need named parameters "
                    "so each input can be recorded. Replace it with explicit parameters."
                )
        self._binding = _Binding(self.signature)

    @property
    def name(self) -> str:
        """The step's name."""
        return self.options.name

    def __repr__(self) -> str:
        return f"<Step {self.options.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Inside a pipeline being built, add a node; anywhere else, run the function."""
        builder = current_builder()
        if builder is None:
            return self.func(*args, **kwargs)
        return typing.cast("R", builder.add_step(self, args, kwargs))

    def named(self, name: str) -> Callable[P, R]:
        """Return this step, naming the node the next call adds to the pipeline.

        ``train.named(f"lr-{c}")(df, C=c)`` adds the node ``train[lr-0.1]`` instead of
        ``train[2]``: its id no longer depends on the call's position, so ``diff``,
        ``compare``, ``why`` and exports pair it with the same call of another run. The
        name is a label: it is not part of the cache key (see docs/caching.md). The
        name is given apart from the step's own parameters, so it never clashes with a
        parameter called ``name``. Outside a pipeline the call just runs the function.

        Args:
            name: letters, digits and ``_ . = + , -`` (at most 100; not all digits);
                unique among the calls of this step in the pipeline.

        Returns:
            A callable taking the step's own arguments.

        Raises:
            DefinitionError: the name is invalid (the duplicate check happens at the call).
        """
        node_name = validate_node_name(self.name, name)

        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            builder = current_builder()
            if builder is None:
                return self.func(*args, **kwargs)
            return typing.cast("R", builder.add_step(self, args, kwargs, name=node_name))

        call.__name__ = call.__qualname__ = f"{self.name}[{node_name}]"
        return call

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Bind call arguments to parameter names, defaults applied.

        Raises:
            DefinitionError: if the arguments do not fit the step's signature.
        """
        found = self._binding.bind(args, kwargs)
        if found is not None:
            return found
        try:  # arguments that do not fit: the signature says what is wrong
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise DefinitionError(
                f"step {self.name!r} was called with arguments that do not fit its signature "
                f"{self.name}{self.signature}: {exc}"
            ) from None
        bound.apply_defaults()
        return dict(bound.arguments)


class _Binding:
    """Binds a call's arguments as ``Signature.bind`` plus ``apply_defaults`` do, faster.

    A graph binds every call of a step while it is built (thousands of calls for a
    large pipeline); a step has no ``*args`` or ``**kwargs``, so binding is matching
    names. Arguments that do not fit give None: the caller binds them with the
    signature, which says what is wrong.
    """

    __slots__ = ("defaults", "keywords", "order", "positional")

    def __init__(self, signature: inspect.Signature) -> None:
        params = list(signature.parameters.values())
        kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        self.order = tuple(p.name for p in params)
        self.positional = tuple(p.name for p in params if p.kind in kinds)
        self.keywords = frozenset(
            p.name for p in params if p.kind != inspect.Parameter.POSITIONAL_ONLY
        )
        self.defaults = {p.name: p.default for p in params if p.default is not p.empty}

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """Parameter name -> value, in parameter order, defaults applied; None if unfit."""
        if len(args) > len(self.positional):
            return None
        given = dict(zip(self.positional, args, strict=False))
        for name, value in kwargs.items():
            if name in given or name not in self.keywords:
                return None
            given[name] = value
        bound: dict[str, Any] = {}
        for name in self.order:
            if name in given:
                bound[name] = given[name]
            elif name in self.defaults:
                bound[name] = self.defaults[name]
            else:
                return None
        return bound


def _bound_contracts(
    step_name: str,
    func: Callable[..., Any],
    outputs: tuple[str, ...],
    contracts: Mapping[str, Any] | None,
) -> tuple[Boundary, ...]:
    """:func:`~pipetrail.core.contract.bind_contracts` for a step that declares contracts.

    Most steps declare none: they get no boundaries without the contracts module being
    imported or the function's signature read.
    """
    if not contracts:
        return ()
    from pipetrail.core.contract import bind_contracts

    return bind_contracts(step_name, func, inspect.signature(func), outputs, contracts)


def _output_names(func: Callable[..., Any], declared: tuple[str, ...] | None) -> tuple[str, ...]:
    if declared is not None:
        if not declared or len(set(declared)) != len(declared):
            raise DefinitionError(
                f"step {func.__name__!r}: outputs={declared!r} must be distinct, non-empty names"
            )
        return declared
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # noqa: BLE001 - unresolvable hints just mean "one output"
        return ("output",)
    ret = hints.get("return")
    if typing.get_origin(ret) is tuple:
        items = typing.get_args(ret)
        if items and items[-1] is not Ellipsis:
            return tuple(f"output_{i}" for i in range(len(items)))
    return ("output",)


@overload
def step(func: Callable[P, R], /) -> Step[P, R]: ...


@overload
def step(
    *,
    name: str | None = None,
    version: str | int | None = None,
    cache: bool = True,
    outputs: tuple[str, ...] | list[str] | None = None,
    allow_pickle: bool = False,
    contracts: Mapping[str, Any] | None = None,
    classification: str | Mapping[str, str] | None = None,
    retries: int = 0,
    resources: Mapping[str, Any] | None = None,
) -> Callable[[Callable[P, R]], Step[P, R]]: ...


def step(
    func: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    version: str | int | None = None,
    cache: bool = True,
    outputs: tuple[str, ...] | list[str] | None = None,
    allow_pickle: bool = False,
    contracts: Mapping[str, Any] | None = None,
    classification: str | Mapping[str, str] | None = None,
    retries: int = 0,
    resources: Mapping[str, Any] | None = None,
) -> Step[P, R] | Callable[[Callable[P, R]], Step[P, R]]:
    """Declare a function as a pipeline step.

    Use bare (``@step``) or with options (``@step(version="2", cache=False)``).

    Args:
        func: the function (when used bare).
        name: the name recorded for the step; defaults to the function's name.
        version: bump to invalidate cached results on purpose.
        cache: ``False`` executes the step on every run.
        outputs: names for several outputs; by default a ``tuple[A, B]`` return annotation
            gives ``output_0``, ``output_1``.
        allow_pickle: let outputs with no safe serializer be stored with pickle (trusted).
        contracts: parameter or output name -> a :class:`~pipetrail.contracts.Contract` or a
            bare schema (pandera, ``pyarrow.Schema``, pydantic model). Inputs are checked
            before the call, outputs after it; a violation fails the step.
        classification: a label for every output (``"pii"``) or output name -> label
            (``{"output": "public"}``); labels are listed in docs/data-handling.md.
            Unnamed outputs inherit the strictest label of the step's inputs; a label
            lower than that must be earned by a recorded privacy operation.
        retries: execute the step again up to this many times when it fails (it
            raised, or its worker process died); each failed attempt is recorded.
        resources: what the step needs to run, ``{"cpu": 2, "memory": "4GiB", "gpu": 1}``
            (see :mod:`pipetrail.core.resources`); the ``dask`` and ``processes``
            executors schedule by it, and it is recorded with the step run.

    Returns:
        The :class:`Step`, or a decorator producing one.

    Raises:
        DefinitionError: if the options or the function's signature are invalid.
    """

    def decorate(f: Callable[P, R]) -> Step[P, R]:
        if isinstance(f, Step):
            raise DefinitionError(f"{f.name!r} is already a step; apply @step once")
        if not callable(f) or not hasattr(f, "__name__"):
            raise DefinitionError(f"@step needs a function, got {type(f).__name__}")
        step_name = name or f.__name__
        if not _NAME_RE.fullmatch(step_name):
            raise DefinitionError(
                f"step name {step_name!r} is invalid: use letters, digits, '_', '-' and '.'"
            )
        if (
            inspect.iscoroutinefunction(f)
            or inspect.isgeneratorfunction(f)
            or inspect.isasyncgenfunction(f)
        ):
            raise DefinitionError(
                f"step {step_name!r} is a coroutine or generator function; steps must return "
                "their outputs"
            )
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise DefinitionError(
                f"step {step_name!r}: retries must be a whole number >= 0, got {retries!r}"
            )
        output_names = _output_names(f, None if outputs is None else tuple(outputs))
        options = StepOptions(
            name=step_name,
            version=None if version is None else str(version),
            cache=cache,
            outputs=output_names,
            allow_pickle=allow_pickle,
            contracts=_bound_contracts(step_name, f, output_names, contracts),
            classification=tuple(
                sorted(step_labels(step_name, output_names, classification).items())
            ),
            retries=retries,
            resources=parse_resources(f"step {step_name!r}", resources),
        )
        return Step(f, options)

    if func is not None:
        return decorate(func)
    return decorate
