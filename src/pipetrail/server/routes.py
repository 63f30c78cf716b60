"""A table of routes a module declares, installed on the application in one call.

Each module of the API lists its routes here (``@routes.get(path, ...)``) and
:meth:`RouteTable.install` adds them to the application as plain routes of its own, so
that every route is a top-level ``APIRoute`` the deny-by-default check can inspect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastapi import FastAPI

__all__ = ["RouteTable"]

F = TypeVar("F", bound="Callable[..., Any]")


class RouteTable:
    """Routes under ``prefix``, each with the keyword arguments of ``add_api_route``.

    Args:
        prefix: prepended to every path (``/api/v1``).
        defaults: keyword arguments every route gets unless it sets them.
    """

    def __init__(self, prefix: str = "", **defaults: Any) -> None:
        self.prefix = prefix
        self.defaults = defaults
        self.entries: list[tuple[str, str, Callable[..., Any], dict[str, Any]]] = []

    def _add(self, method: str, path: str, options: dict[str, Any]) -> Callable[[F], F]:
        def record(func: F) -> F:
            self.entries.append((method, self.prefix + path, func, self.defaults | options))
            return func

        return record

    def get(self, path: str, **options: Any) -> Callable[[F], F]:
        """Declare a GET route."""
        return self._add("GET", path, options)

    def post(self, path: str, **options: Any) -> Callable[[F], F]:
        """Declare a POST route."""
        return self._add("POST", path, options)

    def install(self, app: FastAPI) -> None:
        """Add every declared route to ``app``."""
        for method, path, func, options in self.entries:
            app.add_api_route(path, func, methods=[method], **options)
