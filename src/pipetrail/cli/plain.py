"""Plain-text tables for output that is not a terminal (pipes, files, CI logs).

rich draws the tables a terminal shows; it costs tens of milliseconds to import, more than
the rest of a listing such as ``pipetrail runs``. Output that goes to a pipe or a file gets
these tables instead: no styles, no box characters, columns aligned with spaces, one row
per line (``grep`` and ``awk`` read them). Standard library only.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["is_terminal", "plain_table"]

_GAP = "  "


def is_terminal() -> bool:
    """Whether standard output is a terminal (styles and rich tables are for it)."""
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty is not None and isatty())


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return the rows under their headers, each column as wide as its widest cell.

    A line break inside a cell would split a row over two lines; it is shown as a space.
    Trailing spaces are dropped.

    Args:
        headers: the column names.
        rows: the cells, one sequence per row, as many as there are headers.

    Returns:
        The table, one line per row, without a final line break.
    """
    cells = [list(headers)] + [[" ".join(str(c).splitlines()) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [_GAP.join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)
