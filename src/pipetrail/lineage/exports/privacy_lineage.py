"""Privacy operations in the exports: OpenLineage column lineage and PROV attributes.

A step that calls ``pipetrail.privacy`` (``pseudonymize``, ``drop``, ``generalize``,
``aggregate``, ``check_k_anonymity``; docs/data-handling.md) records each call in its
event's ``data_ops``. This module turns those records into what the exports say:

* :func:`column_lineage`: the OpenLineage ``columnLineage`` dataset facet (spec 1-2-0)
  of a step's output. Each column a privacy operation touched maps to the input column
  it came from, with one transformation per operation, in order:

  ==================  ===========================================================
  operation           transformation
  ==================  ===========================================================
  pseudonymize        ``DIRECT`` / ``TRANSFORMATION``, ``masking: true`` (keyed hash)
  generalize          ``DIRECT`` / ``TRANSFORMATION``, ``masking: true`` (bins, levels)
  aggregate           an aggregate column: ``DIRECT`` / ``AGGREGATION``, ``masking:
                      true``; a group column: ``DIRECT`` / ``IDENTITY``; and, for the
                      whole dataset, ``INDIRECT`` / ``GROUP_BY`` on the group columns
                      and ``INDIRECT`` / ``FILTER`` (``masking: true``) when small
                      groups were suppressed
  drop                the column is gone: no output field; listed in ``pipetrail_privacy``
  ==================  ===========================================================

  Only what the records say is stated: a column no privacy operation touched is left
  out (the step's own code may have computed it from anything).
* :func:`operation_attributes`: the PROV attributes of one operation (what it did:
  columns, groups and rows suppressed, k), never a key or a value of the data.

Imports only the standard library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["PRIVACY_OPS", "column_lineage", "operation_attributes", "privacy_operations"]

#: The data operations that are privacy operations (``pipetrail.privacy``).
PRIVACY_OPS = ("pseudonymize", "drop", "generalize", "aggregate", "check_k_anonymity")

Source = tuple[str, str, str]  # (namespace, dataset name, column)
Lineage = list[tuple[Source, list[dict[str, Any]]]]


def privacy_operations(data_ops: list[Any]) -> list[dict[str, Any]]:
    """The privacy operations among a step's recorded data operations, in order."""
    return [op for op in data_ops if isinstance(op, dict) and op.get("op") in PRIVACY_OPS]


def _transform(kind: str, subtype: str, description: str, *, masking: bool) -> dict[str, Any]:
    return {"type": kind, "subtype": subtype, "description": description, "masking": masking}


def _describe(op: dict[str, Any]) -> str:
    args = op.get("args") or {}
    name = op["op"]
    if name == "pseudonymize":
        return (
            f"pipetrail.privacy.pseudonymize: keyed hash ({op.get('algorithm', 'keyed')}, "
            f"key {op.get('key_id', '?')})"
        )
    if name == "generalize":
        how = f"{len(args['bins']) - 1} bins" if "bins" in args else f"{args.get('levels')} levels"
        return f"pipetrail.privacy.generalize: values coarsened into {how}"
    return f"pipetrail.privacy.{name}"


class _Columns:
    """Where each current column of the table came from, and what was done to it."""

    def __init__(self, source: Callable[[str], Source | None]) -> None:
        self._source = source
        self.columns: dict[str, Lineage] = {}
        self.dataset: list[tuple[Source, dict[str, Any]]] = []

    def get(self, column: str) -> Lineage:
        if column not in self.columns:
            source = self._source(column)
            self.columns[column] = [(source, [])] if source is not None else []
        return self.columns[column]

    def touch(self, column: str, transform: dict[str, Any]) -> None:
        self.columns[column] = [(src, [*done, transform]) for src, done in self.get(column)]

    def apply(self, op: dict[str, Any]) -> None:
        name = op["op"]
        args = op.get("args") or {}
        if name in ("pseudonymize", "generalize"):
            for column in op.get("columns") or []:
                self.touch(
                    column, _transform("DIRECT", "TRANSFORMATION", _describe(op), masking=True)
                )
        elif name == "drop":
            for column in op.get("columns") or []:
                self.get(column)
                self.columns.pop(column, None)
        elif name == "aggregate":
            self._aggregate(op, args)

    def _aggregate(self, op: dict[str, Any], args: dict[str, Any]) -> None:
        keys = [str(k) for k in args.get("by") or []]
        k = args.get("min_group_size", 1)
        kept: dict[str, Lineage] = {}
        for key in keys:
            same = _transform(
                "DIRECT", "IDENTITY", "pipetrail.privacy.aggregate: group", masking=False
            )
            kept[key] = [(src, [*done, same]) for src, done in self.get(key)]
        for out, spec in (args.get("aggs") or {}).items():
            column, _, function = str(spec).partition(":")
            what = f"pipetrail.privacy.aggregate: {function} of {column} per group (k={k})"
            step = _transform("DIRECT", "AGGREGATION", what, masking=True)
            kept[str(out)] = [(src, [*done, step]) for src, done in self.get(column)]
        rows = _transform(
            "DIRECT", "AGGREGATION", "pipetrail.privacy.aggregate: rows per group", masking=True
        )
        kept["n"] = [(src, [*done, rows]) for key in keys for src, done in self.get(key)]
        for key in keys:
            for src, _ in self.get(key):
                group = "pipetrail.privacy.aggregate: grouped by this column"
                self.dataset.append((src, _transform("INDIRECT", "GROUP_BY", group, masking=False)))
                if op.get("groups_suppressed"):
                    gone = (
                        f"pipetrail.privacy.aggregate: {op['groups_suppressed']} groups smaller "
                        f"than {k} suppressed ({op.get('rows_suppressed', 0)} rows)"
                    )
                    self.dataset.append((src, _transform("INDIRECT", "FILTER", gone, masking=True)))
        self.columns = kept


def _input_field(source: Source, transforms: list[dict[str, Any]]) -> dict[str, Any]:
    namespace, name, column = source
    return {"namespace": namespace, "name": name, "field": column, "transformations": transforms}


def column_lineage(
    ops: list[dict[str, Any]],
    inputs: list[tuple[str, str, list[str] | None]],
    output_fields: list[str] | None,
) -> dict[str, Any] | None:
    """The ``columnLineage`` facet's fields for a step output, or None (nothing to say).

    Args:
        ops: the step's privacy operations, in the order they ran.
        inputs: the step's input datasets: ``(namespace, name, columns)``; ``columns``
            None when the schema is not known. A column is traced to the first input
            that has it, or to the only input when there is one.
        output_fields: the output's columns when its schema is known: fields outside
            it are left out.

    Returns:
        ``{"fields": ..., "dataset": [...]}`` (``dataset`` only when not empty), ready
        for the facet.
    """
    if not ops or not inputs:
        return None
    sources: dict[str, Source] = {}
    for namespace, name, columns in inputs:
        for column in columns or []:
            sources.setdefault(column, (namespace, name, column))

    def source(column: str) -> Source | None:
        if column in sources:
            return sources[column]
        if len(inputs) == 1:  # a table read from the step's only input
            return (inputs[0][0], inputs[0][1], column)
        return None

    table = _Columns(source)
    for op in ops:
        table.apply(op)
    fields: dict[str, Any] = {}
    for column, lineage in table.columns.items():
        touched = [(src, done) for src, done in lineage if done]
        if not touched or (output_fields is not None and column not in output_fields):
            continue
        fields[column] = {"inputFields": [_input_field(src, done) for src, done in touched]}
    facet: dict[str, Any] = {"fields": fields}
    if table.dataset:
        facet["dataset"] = [_input_field(src, [t]) for src, t in table.dataset]
    if not fields and not table.dataset:
        return None
    return facet


def operation_attributes(op: dict[str, Any]) -> dict[str, Any]:
    """What one privacy operation did, as plain values for PROV attributes.

    Returns:
        ``operation``, ``columns``, ``args`` and what it changed (``algorithm``,
        ``key_id``, ``values_nulled``, ``groups``, ``groups_suppressed``,
        ``rows_suppressed``, ``k``, ``ok``, ``masking``), the ones the record has.
    """
    keys = (
        "columns",
        "algorithm",
        "key_id",
        "values_nulled",
        "groups",
        "groups_suppressed",
        "rows_suppressed",
        "k",
        "ok",
    )
    found: dict[str, Any] = {"operation": op["op"], "args": op.get("args") or {}}
    found.update({key: op[key] for key in keys if key in op})
    found["masking"] = op["op"] in ("pseudonymize", "generalize", "aggregate")
    return found
