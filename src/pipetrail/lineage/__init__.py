"""Lineage and provenance over run records: graph queries, comparisons, standard exports.

Owns: upstream/downstream/path queries (recursive SQL over the projections), run diffs
and comparisons, and exports to OpenLineage, W3C PROV-JSON and in-toto. Imports
execution and the layers below it; never cli.
"""
