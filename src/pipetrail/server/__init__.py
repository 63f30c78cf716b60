"""The team server: an HTTP API (``/api/v1``) and web pages over one project.

Thin, like :mod:`pipetrail.cli`: every route reads through :mod:`pipetrail.read` and the
governance services, and every route declares the action it needs
(:func:`pipetrail.server.auth.need`); a route that declares none is refused when the
application is built. Importing this package imports nothing else; FastAPI and uvicorn
are loaded by :func:`pipetrail.server.app.create_app` and ``pipetrail serve``
(:mod:`pipetrail.server.serve_cmd`). See docs/server.md.

Layer: the top, beside ``cli``.
"""

from __future__ import annotations

__all__: list[str] = []
