"""JSON responses for the API: dataclasses, non-finite numbers (as null), any key type."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

__all__ = ["JsonResponse"]


def _default(value: Any) -> Any:
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=str) if isinstance(value, set | frozenset) else list(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


class JsonResponse(Response):
    """``application/json`` rendered by orjson (NaN and infinities become null)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        """The body for ``content``."""
        return orjson.dumps(content, default=_default, option=orjson.OPT_NON_STR_KEYS)
