"""Lineage and provenance over run records: graph queries, comparisons, standard exports.

Owns: upstream/downstream/path queries (recursive SQL over the projections), run diffs
and comparisons, and exports to OpenLineage, W3C PROV-JSON and in-toto. Imports
execution and the layers below it; never cli.
"""

from __future__ import annotations

from pipetrail.lineage.graph import LineageGraph as LineageGraph
from pipetrail.lineage.queries import downstream as downstream
from pipetrail.lineage.queries import path as path
from pipetrail.lineage.queries import upstream as upstream
from pipetrail.lineage.refs import resolve_ref as resolve_ref

__all__ = ["LineageGraph", "downstream", "path", "resolve_ref", "upstream"]
