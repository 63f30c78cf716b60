"""The shapes path and query parameters must have; anything else is refused with 422.

No parameter names a file: each is a run ref, a step's node id, a digest, a model or an
alias name, a request id or a filter, and each is matched against its whole shape here
(anchored patterns, bounded lengths), before the library sees it. Together with the
request guard (:mod:`pipetrail.server.limits`), which refuses control characters and
``..`` segments in the raw path and query, nothing a caller sends can name a path.
"""

from __future__ import annotations

__all__ = [
    "ALIAS",
    "ARTIFACT_REF",
    "DIGEST",
    "FILTER_PAIR",
    "LINEAGE_REF",
    "MODEL",
    "NAME",
    "REQUEST",
    "RUN_REF",
    "STEP",
]

_RUN = r"(latest|[0-9A-Za-z_-]{4,64})"
_NODE = r"[A-Za-z_][A-Za-z0-9_.\[\]-]{0,199}"
_DIGEST = r"(blake3:)?[0-9a-f]{6,64}"
RUN_REF = rf"^{_RUN}$"
STEP = rf"^{_NODE}$"
DIGEST = rf"^{_DIGEST}$"
# A digest (prefix), or RUN:STEP.
ARTIFACT_REF = rf"^({_DIGEST}|{_RUN}:{_NODE})$"
# What a lineage query starts from: a digest (prefix), a run or a step run id (prefix).
LINEAGE_REF = rf"^({_DIGEST}|{_RUN})$"
MODEL = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}(\.[A-Za-z0-9_-]{1,99})*$"
ALIAS = r"^[a-z][a-z0-9_-]{0,63}$"
REQUEST = r"^req-[0-9a-f]{1,10}$"
NAME = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$"
# KEY=VALUE of a params or tags filter.
FILTER_PAIR = r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}=[^\x00-\x1f\x7f]{0,200}$"
