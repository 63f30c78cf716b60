"""Run search: ``--where`` conditions, sort orders and extra columns, compiled to SQL.

A condition is ``FIELD OP VALUE``; several are joined by ``and`` (or given separately).
Fields: ``metrics.NAME`` (a metric of any step, by its name in the step or as
``NODE.NAME``), ``params.NAME``, ``tags.KEY``, and the run's ``status``, ``pipeline``,
``name``, ``purpose`` and ``started_at``. Operators: ``=`` (or ``==``), ``!=``, ``<``,
``<=``, ``>``, ``>=``. Values: numbers, ``true``/``false``, ``'quoted text'`` or a bare
word. Metrics compare as numbers; params compare as numbers with ``<``, ``>``, ``<=``,
``>=`` and by their recorded value with ``=`` and ``!=``; the other fields as text.

Everything is SQL over the projections (``run_metrics``, ``run_params``, ``run_tags``,
``runs``), each condition driven by an index. Unknown fields, operators that do not apply
to a field, and metric or parameter names no run records are refused with the names that
do exist.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipetrail.errors import ParamError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from pipetrail.ledger.queries import Reader

__all__ = [
    "Condition",
    "Sort",
    "condition_sql",
    "field_values",
    "parse_columns",
    "parse_sort",
    "parse_value",
    "parse_where",
    "sort_sql",
]

_OPS = {"=": "=", "==": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_RUN_FIELDS = ("status", "pipeline", "name", "purpose", "started_at")
_PREFIXED = ("metrics", "params", "tags")
_CONDITION = re.compile(
    r"\s*(?P<field>[A-Za-z_][\w.:/\-\[\]=+,]*)\s*(?P<op>==|!=|<=|>=|=|<|>)\s*"
    r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s'\"]+)\s*"
)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


@dataclass(frozen=True)
class Condition:
    """One condition on runs: ``field`` (e.g. ``metrics.f1``), ``op`` and ``value``."""

    field: str
    op: str
    value: Any

    @property
    def kind(self) -> str:
        """``metrics``, ``params``, ``tags`` or ``run`` (a column of the run)."""
        head = self.field.split(".", 1)[0]
        return head if head in _PREFIXED else "run"

    @property
    def name(self) -> str:
        """The metric, parameter or tag name (the field itself for a run column)."""
        return self.field.split(".", 1)[1] if self.kind != "run" else self.field


@dataclass(frozen=True)
class Sort:
    """An order of runs: by ``field`` (a run column, ``metrics.NAME`` or ``params.NAME``)."""

    field: str
    descending: bool


def parse_value(text: str) -> Any:
    """A value as a condition reads it: a number, ``true``/``false``, quoted or bare text."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if _NUMBER.fullmatch(text):
        number = float(text)
        return int(number) if number.is_integer() and re.fullmatch(r"[+-]?\d+", text) else number
    return text


def _check_field(field: str, where: str) -> None:
    head, dot, rest = field.partition(".")
    if head in _PREFIXED and dot and rest:
        return
    if field in _RUN_FIELDS:
        return
    raise ParamError(
        f"{where}: unknown field {field!r}; use metrics.NAME, params.NAME, tags.KEY or one "
        f"of: {', '.join(_RUN_FIELDS)}"
    )


def parse_where(texts: str | Iterable[str]) -> list[Condition]:
    """Parse ``--where`` text (one string, or several, all joined by *and*).

    Raises:
        ParamError: a condition that does not parse, an unknown field, an operator that
            does not apply to its field, or a metric compared with something not a number.
    """
    found: list[Condition] = []
    for text in [texts] if isinstance(texts, str) else list(texts):
        if not text.strip():
            raise ParamError("an empty --where condition matches nothing; give FIELD OP VALUE")
        for part in _AND.split(text.strip()):
            match = _CONDITION.fullmatch(part)
            if match is None:
                raise ParamError(
                    f"cannot read the condition {part.strip()!r}: write FIELD OP VALUE, for "
                    'example "metrics.f1 > 0.9", "params.C = 0.5" or "tags.stage = prod"'
                )
            condition = Condition(match["field"], _OPS[match["op"]], parse_value(match["value"]))
            _check_field(condition.field, f"--where {part.strip()!r}")
            _check_op(condition, part.strip())
            found.append(condition)
    return found


def _check_op(c: Condition, text: str) -> None:
    numeric = isinstance(c.value, int | float) and not isinstance(c.value, bool)
    if c.kind == "metrics" and not numeric:
        raise ParamError(f"--where {text!r}: metrics compare with numbers, not {c.value!r}")
    if numeric and not math.isfinite(float(c.value)):
        raise ParamError(f"--where {text!r}: {c.value!r} is not a finite number")
    ordering = c.op not in ("=", "<>")
    if ordering and c.kind == "params" and not numeric:
        raise ParamError(f"--where {text!r}: params compare with <, >, <=, >= as numbers only")
    if ordering and c.kind == "tags":
        raise ParamError(f"--where {text!r}: tags compare with = and != only")
    if ordering and c.kind == "run" and c.field != "started_at":
        raise ParamError(f"--where {text!r}: {c.field} compares with = and != only")


def parse_sort(text: str) -> Sort:
    """Parse ``--sort FIELD [asc|desc]`` (``-FIELD`` for descending, too).

    Raises:
        ParamError: an unknown field or direction.
    """
    words = text.split()
    if not words or len(words) > 2:
        raise ParamError(f"cannot read --sort {text!r}: write FIELD [asc|desc]")
    field = words[0]
    descending = field.startswith("-")
    field = field.lstrip("-")
    if len(words) == 2:
        if words[1].lower() not in ("asc", "desc"):
            raise ParamError(f"--sort {text!r}: the direction must be asc or desc")
        descending = words[1].lower() == "desc"
    _check_field(field, f"--sort {text!r}")
    if field.startswith("tags."):
        raise ParamError(f"--sort {text!r}: sort by metrics, params or a run field, not tags")
    return Sort(field, descending)


def parse_columns(text: str | Iterable[str]) -> list[str]:
    """Parse ``--columns params.C,metrics.f1`` (comma-separated, or several options).

    Raises:
        ParamError: a column that is not ``params.NAME``, ``metrics.NAME`` or ``tags.KEY``.
    """
    items = [text] if isinstance(text, str) else list(text)
    columns = [c.strip() for item in items for c in item.split(",") if c.strip()]
    for column in columns:
        head, dot, rest = column.partition(".")
        if head not in _PREFIXED or not dot or not rest:
            raise ParamError(f"--columns: {column!r} is not params.NAME, metrics.NAME or tags.KEY")
    return columns


def metric_keys(name: str) -> list[str]:
    """The keys a metric row matching ``name`` (as its ``name`` or its ``key``) can have.

    A row's ``name`` is ``NODE.KEY``: a row named ``name`` has for key what follows one of
    its dots. With ``name`` itself (a row whose key it is), these are every key such a
    row can have, so ``key IN (...)`` lets ``ix_run_metrics_key_value_name`` find the rows
    (no index leads with ``name``; docs/adr/0036).
    """
    keys = [name]
    at = name.find(".")
    while at >= 0:
        keys.append(name[at + 1 :])
        at = name.find(".", at + 1)
    return keys


def _metric_match(alias: str, name: str, prefix: str) -> tuple[str, dict[str, Any]]:
    """The SQL condition on ``run_metrics alias`` for a metric called ``name``.

    Its parameters are named ``prefix`` followed by a number.
    """
    keys = metric_keys(name)
    marks = ", ".join(f":{prefix}{k}" for k in range(len(keys)))
    sql = f"{alias}.key IN ({marks}) AND ({alias}.name = :{prefix}0 OR {alias}.key = :{prefix}0)"
    return sql, {f"{prefix}{k}": key for k, key in enumerate(keys)}


def _known(reader: Reader, table: str, column: str, name: str, what: str) -> None:
    if table == "run_metrics":
        match, args = _metric_match("m", name, "n")
        sql = f"SELECT 1 FROM run_metrics m WHERE {match} LIMIT 1"  # noqa: S608
    else:
        sql, args = f"SELECT 1 FROM {table} WHERE {column} = :n LIMIT 1", {"n": name}  # noqa: S608
    if reader.fetch(sql, args):
        return
    listed = reader.fetch(
        f"SELECT DISTINCT {column} AS n FROM {table} ORDER BY {column} LIMIT 30"  # noqa: S608
    )
    names = ", ".join(str(r["n"]) for r in listed) or "none"
    raise ParamError(f"no run records a {what} {name!r}; the {what}s runs record are: {names}")


def condition_sql(reader: Reader, c: Condition, i: int) -> tuple[str, dict[str, Any]]:
    """The SQL condition on ``runs r`` for ``c`` (parameters named with ``i``).

    Raises:
        ParamError: the condition names a metric or parameter no run records.
    """
    if c.kind == "metrics":
        _known(reader, "run_metrics", "name", c.name, "metric")
        match, args = _metric_match("m", c.name, f"wn{i}_")
        sql = (
            f"r.run_id IN (SELECT m.run_id FROM run_metrics m WHERE {match} "  # noqa: S608 - fixed operators
            f"AND m.value {c.op} :wv{i})"
        )
        return sql, {**args, f"wv{i}": float(c.value)}
    if c.kind == "params":
        _known(reader, "run_params", "name", c.name, "parameter")
        if c.op in ("=", "<>"):
            # Not imported with this module: it builds rows from the event types, which
            # a listing without such a condition does not import.
            from pipetrail.ledger.projection_rows import param_text

            sql = (
                f"{'NOT ' if c.op == '<>' else ''}EXISTS (SELECT 1 FROM run_params p "  # noqa: S608 - fixed operators
                f"WHERE p.run_id = r.run_id AND p.name = :wn{i} AND p.value = :wv{i})"
            )
            return sql, {f"wn{i}": c.name, f"wv{i}": param_text(c.value)}
        sql = (
            f"r.run_id IN (SELECT p.run_id FROM run_params p WHERE p.name = :wn{i} "  # noqa: S608 - fixed operators
            f"AND p.num {c.op} :wv{i})"
        )
        return sql, {f"wn{i}": c.name, f"wv{i}": float(c.value)}
    if c.kind == "tags":
        value = str(c.value).lower() if isinstance(c.value, bool) else str(c.value)
        sql = (
            f"{'NOT ' if c.op == '<>' else ''}EXISTS (SELECT 1 FROM run_tags t "  # noqa: S608 - fixed operators
            f"WHERE t.run_id = r.run_id AND t.key = :wn{i} AND t.value = :wv{i})"
        )
        return sql, {f"wn{i}": c.name, f"wv{i}": value}
    return f"r.{c.field} {c.op} :wv{i}", {f"wv{i}": str(c.value)}


def sort_sql(reader: Reader, sort: Sort) -> tuple[str, dict[str, Any]]:
    """The ``ORDER BY`` expression for ``sort``; runs without the value come last.

    Raises:
        ParamError: the sort names a metric or parameter no run records.
    """
    direction = "DESC" if sort.descending else "ASC"
    if sort.field.startswith("metrics."):
        name = sort.field.split(".", 1)[1]
        _known(reader, "run_metrics", "name", name, "metric")
        value = (
            "(SELECT MAX(m.value) FROM run_metrics m WHERE m.run_id = r.run_id AND "
            "(m.name = :sort_name OR m.key = :sort_name))"
        )
    elif sort.field.startswith("params."):
        name = sort.field.split(".", 1)[1]
        _known(reader, "run_params", "name", name, "parameter")
        value = "(SELECT p.num FROM run_params p WHERE p.run_id = r.run_id AND p.name = :sort_name)"
    else:
        return f"r.{sort.field} {direction}, r.run_id DESC", {}
    nulls = f"CASE WHEN {value} IS NULL THEN 1 ELSE 0 END"
    return f"{nulls}, {value} {direction}, r.run_id DESC", {"sort_name": name}


def field_values(
    reader: Reader, run_ids: Sequence[str], columns: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The values of ``columns`` (``params.X``, ``metrics.X``, ``tags.X``) for each run.

    A metric named without its node takes the value of the step that recorded it (the
    last one when several did); a run lacking a value has no entry for that column.
    """
    found: dict[str, dict[str, Any]] = {run_id: {} for run_id in run_ids}
    if not run_ids or not columns:
        return found
    marks = ", ".join(f":r{i}" for i in range(len(run_ids)))
    args = {f"r{i}": run_id for i, run_id in enumerate(run_ids)}
    wanted = {c.split(".", 1)[0]: [] for c in columns}  # type: dict[str, list[str]]
    for column in columns:
        wanted[column.split(".", 1)[0]].append(column.split(".", 1)[1])
    if "params" in wanted:
        import json

        rows = reader.fetch(
            f"SELECT run_id, name, value FROM run_params WHERE run_id IN ({marks})",  # noqa: S608
            args,
        )
        for row in rows:
            if row["name"] in wanted["params"]:
                found[str(row["run_id"])][f"params.{row['name']}"] = json.loads(row["value"])
    if "metrics" in wanted:
        rows = reader.fetch(
            "SELECT run_id, name, key, value FROM run_metrics "  # noqa: S608
            f"WHERE run_id IN ({marks}) ORDER BY name",
            args,
        )
        for row in rows:
            for name in wanted["metrics"]:
                if name in (row["name"], row["key"]):
                    found[str(row["run_id"])][f"metrics.{name}"] = float(row["value"])
    if "tags" in wanted:
        rows = reader.fetch(
            f"SELECT run_id, key, value FROM run_tags WHERE run_id IN ({marks})",  # noqa: S608
            args,
        )
        for row in rows:
            if row["key"] in wanted["tags"]:
                found[str(row["run_id"])][f"tags.{row['key']}"] = row["value"]
    return found
