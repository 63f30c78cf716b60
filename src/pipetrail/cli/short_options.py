"""Commands whose parser takes a known short option (``-q``) as one straight away.

click's parser first tries every ``-x`` argument as a long option. For a short one that
fails, and the failure builds a "no such option" error that is then dropped: its message
goes through ``gettext`` (which imports ``locale`` and looks for translation files) and
its suggestions through ``difflib`` (imported, then a close-match search). That was
about 2 ms of every ``pipetrail run -q``, the most common way to run a pipeline from a
script. :class:`ShortOptionsFirst` matches an argument that is exactly a declared short
option as a short option first. The outcome is the same: such an argument is never a
long option (click files any one-letter name after a single dash as short).

Imports only ``click``.
"""

from __future__ import annotations

from typing import Any

import click

__all__ = ["ShortOptionsFirst"]


class ShortOptionsFirst(click.Command):
    """A ``click.Command`` whose parser skips the long-option attempt for ``-q`` and alike.

    With a click whose parser does not have the parts this relies on, the parser is left
    as click made it (correct, only slower).
    """

    def make_parser(self, ctx: click.Context) -> Any:
        """Make click's parser, then route exact short options straight to short matching."""
        parser = super().make_parser(ctx)
        known = vars(parser).get("_short_opt")
        general = getattr(parser, "_process_opts", None)
        short = getattr(parser, "_match_short_opt", None)
        if not isinstance(known, dict) or general is None or short is None:
            return parser

        def process_opts(arg: str, state: Any) -> None:
            if arg in known:
                short(arg, state)
            else:
                general(arg, state)

        vars(parser)["_process_opts"] = process_opts  # this parser only: no class patched
        return parser
