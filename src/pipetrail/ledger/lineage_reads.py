"""Lineage reads: recursive walks over ``step_run_io`` and prefix look-ups, as typed rows.

The lineage graph lives in the ``step_run_io`` projection: an artifact is an input of
the step runs that read it and an output of the step runs that wrote it. The walks are
recursive CTEs over that table, with one SQL text for SQLite and PostgreSQL
(docs/adr/0003-read-path.md):

* ``UNION`` (never ``UNION ALL``) keeps each (step run, depth) once, so a cycle (a step
  that returns its input unchanged has the same digest in and out) ends the walk;
* without a depth limit the depth column is a constant, so every step run is visited
  once; with a limit it counts hops and stops at the limit;
* nullable parameters are cast (``CAST(:max_depth AS INTEGER)``) so PostgreSQL can type
  them.

Hops between step runs stay inside a run (a step run reads its inputs from its own run),
so two runs that happen to produce the same digest (``0``, ``None``, ``[]``) are not
linked. Only a reference artifact is taken by content, in every run. Cache hits: see
:mod:`pipetrail.lineage.queries`, which builds the graph from the rows returned here.

The rows are named tuples (typed, immutable, and cheap to build by the ten thousand)
with their JSON columns parsed; no module outside the ledger sees the SQL or the JSON
text.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    from pipetrail.ledger.queries import Reader

__all__ = [
    "CHUNK",
    "ArtifactRow",
    "IoRow",
    "LineageStepRow",
    "RefKind",
    "SourceRow",
    "WalkDirection",
    "artifact_rows",
    "io_rows",
    "path_step_runs",
    "prefix_candidates",
    "source_rows",
    "upper_bound",
    "walk_step_runs",
]

WalkDirection = Literal["upstream", "downstream"]
RefKind = Literal["artifact", "run", "step_run"]


class LineageStepRow(NamedTuple):
    """A step run a walk reached, with its run's summary (None when the run is unknown).

    Attributes:
        step_run_id: its id.
        run_id: its run.
        node_id: the node inside the pipeline.
        step: the step's name.
        pipeline: the pipeline's name.
        status: ``completed``, ``cached``, ``failed`` or ``running``.
        cache_decision: ``hit``, ``miss``, ``disabled`` or ``forced-miss``.
        cache_reason: why.
        reused_step_run_id: for a cache hit, the executed step run it reused.
        code_digest: the code fingerprint.
        components: the cache key's components (``params``...), parsed.
        started_at: start time.
        ended_at: end time, or None.
        run_pipeline: the run's pipeline, or None when the run is not recorded.
        run_status: the run's status.
        run_owner: who started the run.
        run_started_at: when the run started.
        run_ended_at: when it ended, or None.
    """

    step_run_id: str
    run_id: str
    node_id: str
    step: str
    pipeline: str
    status: str
    cache_decision: str | None
    cache_reason: str | None
    reused_step_run_id: str | None
    code_digest: str | None
    components: dict[str, Any]
    started_at: str
    ended_at: str | None
    run_pipeline: str | None
    run_status: str | None
    run_owner: str | None
    run_started_at: str | None
    run_ended_at: str | None

    @classmethod
    def from_tuple(cls, row: tuple[Any, ...]) -> LineageStepRow:
        """Build from a row of :data:`_SELECT_STEPS` (its columns are the fields, in order)."""
        components = row[_COMPONENTS]
        parsed = json.loads(components) if isinstance(components, str) else components
        return cls._make((*row[:_COMPONENTS], parsed or {}, *row[_COMPONENTS + 1 :]))


_COMPONENTS = LineageStepRow._fields.index("components")


class IoRow(NamedTuple):
    """One input (``in``) or output (``out``) of a step run."""

    step_run_id: str
    direction: Literal["in", "out"]
    name: str
    digest: str


class ArtifactRow(NamedTuple):
    """A recorded artifact: type, serializer, size, role and meta (parsed)."""

    digest: str
    type_name: str
    serializer: str
    size: int
    role: str
    meta: dict[str, Any]


class SourceRow(NamedTuple):
    """A path under which a digest was observed as a source, and its size."""

    digest: str
    path: str
    size: int


_DEPTH = "CAST(:max_depth AS INTEGER)"


def _depth(next_depth: str) -> str:
    """The depth column of a hop: the hop count, or a constant when there is no limit.

    With a constant, UNION keeps one row per step run however many paths lead to it, so
    each step run is expanded once and a cycle ends the walk.
    """
    return f"CASE WHEN {_DEPTH} IS NULL THEN 0 ELSE {next_depth} END"


def _within(next_depth: str) -> str:
    return f"({_DEPTH} IS NULL OR {next_depth} <= {_DEPTH})"


# Seeds of a walk, by what the reference is. A reference artifact is taken by content:
# its producers (upstream: executed ones) or readers (downstream) in any run, one hop
# away. A reference step run or run is hop 0.
_SEED_STEP_RUNS = {
    "step_run": "SELECT s.step_run_id{depth} FROM step_runs s WHERE s.step_run_id = :{seed}",
    "run": "SELECT s.step_run_id{depth} FROM step_runs s WHERE s.run_id = :{seed}",
}
_SEED_ARTIFACT = {
    "upstream": (
        "SELECT p.step_run_id, 1 FROM step_run_io p "
        "JOIN step_runs s ON s.step_run_id = p.step_run_id "
        "WHERE p.digest = :{seed} AND p.direction = 'out' AND s.status = 'completed'"
    ),
    "downstream": (
        "SELECT c.step_run_id, 1 FROM step_run_io c WHERE c.digest = :{seed} AND c.direction = 'in'"
    ),
}


def _seeds(direction: str, kind: str, seed: str, *, depth: bool = True) -> str:
    """A SELECT of the step runs a walk starts from (with their depth when ``depth``)."""
    if kind == "artifact":
        return _SEED_ARTIFACT[direction].format(seed=seed)
    return _SEED_STEP_RUNS[kind].format(seed=seed, depth=", 0" if depth else "")


# One hop. A step run reads its inputs from step runs of its own run, so hops stay in
# the run (`run_id`): a digest that another run happens to produce too (0, None, [])
# links nothing. Upstream: from a step run's inputs to the step runs of its run that
# wrote them, or, for a cache hit, to the executed step run it reused. Downstream: from a
# step run's outputs to the step runs of its run that read them, and to the cache hits
# in later runs that reused it (they have the same output digests; same hop count).
# The first column is cast so PostgreSQL types it exactly as the seeds' column.
_HOPS = {
    "upstream": (
        "SELECT CAST(CASE WHEN s.reused_step_run_id IS NULL THEN s.step_run_id "  # noqa: S608
        "ELSE s.reused_step_run_id END AS VARCHAR(40)), "
        f"{_depth('w.depth + 1')} FROM {{name}} w "
        "JOIN step_run_io i ON i.step_run_id = w.step_run_id AND i.direction = 'in' "
        "JOIN step_run_io p ON p.digest = i.digest AND p.direction = 'out' "
        "AND p.run_id = i.run_id "
        "JOIN step_runs s ON s.step_run_id = p.step_run_id "
        f"WHERE {_within('w.depth + 1')}"
    ),
    "downstream": (
        f"SELECT x.step_run_id, {_depth('w.depth + ' + '{hop}')} FROM {{name}} w "  # noqa: S608
        "JOIN step_run_io o ON o.step_run_id = w.step_run_id AND o.direction = 'out' "
        "JOIN step_run_io x ON x.digest = o.digest "
        # Only another run's writer of the digest can be a cache hit of w: look up those.
        "LEFT JOIN step_runs xs ON xs.step_run_id = x.step_run_id AND x.direction = 'out' "
        "AND x.run_id <> o.run_id "
        "WHERE ((x.direction = 'in' AND x.run_id = o.run_id) "
        "OR xs.reused_step_run_id = w.step_run_id) "
        f"AND {_within('w.depth + ' + '{hop}')}"
    ).replace("{hop}", "CASE WHEN x.direction = 'out' THEN 0 ELSE 1 END"),
}


def _walk(name: str, direction: str, kind: str, seed: str) -> str:
    """The CTE ``name(step_run_id, depth)``: step runs reached from a seed."""
    return (
        f"{name}(step_run_id, depth) AS ({_seeds(direction, kind, seed)} "
        f"UNION {_HOPS[direction].format(name=name)})"
    )


def _nodes(walked: str) -> str:
    """The CTE ``nodes(step_run_id)``: the walked step runs and what their hits reused."""
    return (
        f"nodes(step_run_id) AS (SELECT step_run_id FROM {walked} "  # noqa: S608 - constants
        f"UNION SELECT s.reused_step_run_id FROM {walked} w "
        "JOIN step_runs s ON s.step_run_id = w.step_run_id "
        "WHERE s.reused_step_run_id IS NOT NULL)"
    )


# The walked step runs with their runs: one statement, so the walk runs once.
_SELECT_STEPS = (
    " SELECT s.step_run_id, s.run_id, s.node_id, s.step, s.pipeline, s.status, "
    "s.cache_decision, s.cache_reason, s.reused_step_run_id, s.code_digest, s.components, "
    "s.started_at, s.ended_at, r.pipeline AS run_pipeline, r.status AS run_status, "
    "r.owner AS run_owner, r.started_at AS run_started_at, r.ended_at AS run_ended_at "
    "FROM nodes n JOIN step_runs s ON s.step_run_id = n.step_run_id "
    "LEFT JOIN runs r ON r.run_id = s.run_id"
)
# Then, by key (primary-key and index look-ups, CHUNK keys per statement): their edges,
# the artifacts at the other ends (once each: a table's meta can be kilobytes), and the
# paths under which those were observed as sources.
_EDGES_OF = (
    "SELECT step_run_id, direction, name, digest FROM step_run_io WHERE step_run_id IN ({keys})"
)
_ARTIFACTS_OF = (
    "SELECT digest, type_name, serializer, size, role, meta FROM artifacts WHERE digest IN ({keys})"
)
_SOURCES_OF = "SELECT DISTINCT digest, path, size FROM sources WHERE digest IN ({keys})"
CHUNK = 900  # keys per statement: under SQLite's historical limit of 999 parameters


def walk_step_runs(
    reader: Reader, direction: WalkDirection, kind: RefKind, seed: str, max_depth: int | None
) -> list[LineageStepRow]:
    """Return the step runs reached from ``seed`` going ``direction``, and what hits reused.

    Args:
        reader: a reader over the project's metadata store.
        direction: ``upstream`` (provenance) or ``downstream`` (impact).
        kind: what ``seed`` is: an artifact digest, a run id or a step run id (full).
        seed: the full digest or id the walk starts from.
        max_depth: follow at most this many step runs; None for no limit. With 0 and an
            artifact seed, nothing is walked.
    """
    cte = "WITH RECURSIVE " + _walk("walk", direction, kind, "seed") + ", " + _nodes("walk")
    if max_depth == 0 and kind == "artifact":  # the artifact alone
        cte = "WITH nodes(step_run_id) AS (SELECT step_run_id FROM step_runs WHERE 1 = 0)"
    params = {"seed": seed, "max_depth": max_depth}
    return [LineageStepRow.from_tuple(r) for r in reader.fetch_tuples(cte + _SELECT_STEPS, params)]


def path_step_runs(
    reader: Reader, start: tuple[RefKind, str], goal: tuple[RefKind, str]
) -> list[LineageStepRow]:
    """Return the step runs downstream of ``start`` and upstream of ``goal`` (and a start).

    ``start`` and ``goal`` are ``(kind, full id)``. A start step run or run is included
    even when it is no executed producer of the goal (a cached step run), as the place a
    path begins.
    """
    nodes = "SELECT step_run_id FROM both_ways"
    if start[0] != "artifact":
        nodes += " UNION " + _seeds("downstream", start[0], "start", depth=False)
    cte = (
        f"WITH RECURSIVE {_walk('down', 'downstream', start[0], 'start')}, "  # noqa: S608
        f"{_walk('up', 'upstream', goal[0], 'goal')}, "
        "both_ways(step_run_id) AS (SELECT step_run_id FROM down "
        "INTERSECT SELECT step_run_id FROM up), "
        f"nodes(step_run_id) AS ({nodes})"
    )
    params = {"start": start[1], "goal": goal[1], "max_depth": None}
    return [LineageStepRow.from_tuple(r) for r in reader.fetch_tuples(cte + _SELECT_STEPS, params)]


def io_rows(reader: Reader, step_run_ids: list[str]) -> list[IoRow]:
    """Return the inputs and outputs of the given step runs."""
    return [IoRow._make(r) for r in _by_keys(reader, _EDGES_OF, step_run_ids)]


def artifact_rows(reader: Reader, digests: list[str]) -> list[ArtifactRow]:
    """Return the recorded artifacts among ``digests`` (unknown digests are left out)."""
    found = []
    for digest, type_name, serializer, size, role, meta in _by_keys(reader, _ARTIFACTS_OF, digests):
        if isinstance(meta, str):  # most are "{}": no need to parse those
            meta = json.loads(meta) if meta != "{}" else {}
        found.append(ArtifactRow(digest, type_name, serializer, size, role, meta or {}))
    return found


def source_rows(reader: Reader, digests: list[str]) -> list[SourceRow]:
    """Return the distinct (digest, path, size) source observations of ``digests``."""
    return [SourceRow._make(r) for r in _by_keys(reader, _SOURCES_OF, digests)]


def _by_keys(reader: Reader, sql: str, keys: list[str]) -> list[tuple[Any, ...]]:
    """Run ``sql`` (with ``IN ({keys})``) over ``keys`` in chunks of :data:`CHUNK`."""
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        names = {f"k{i}": key for i, key in enumerate(chunk)}
        marks = ", ".join(f":{n}" for n in names)
        rows.extend(reader.fetch_tuples(sql.format(keys=marks), names))
    return rows


# Prefix look-ups: a range on the indexed column finds the candidates without a scan
# (LIKE cannot use these indexes on SQLite); LIKE then confirms each one.
_PREFIX = "SELECT {0} AS id FROM {1} WHERE {0} >= :lo AND {0} < :hi AND {0} LIKE :p"
_CANDIDATES = {
    "artifact": _PREFIX.format("digest", "artifacts")
    + " UNION "
    + _PREFIX.format("digest", "sources")
    + " ORDER BY id LIMIT 6",
    "run": _PREFIX.format("run_id", "runs") + " ORDER BY id LIMIT 6",
    "step_run": _PREFIX.format("step_run_id", "step_runs") + " ORDER BY id LIMIT 6",
}


def prefix_candidates(reader: Reader, kind: RefKind, prefix: str) -> list[str]:
    """Return up to 6 ids of ``kind`` starting with ``prefix``, sorted.

    ``prefix`` is in the stored form: ``blake3:`` and lowercase hex for an artifact,
    uppercase Crockford base32 for a run or step run. Artifacts include source files
    read by reference.
    """
    rows = reader.fetch_tuples(
        _CANDIDATES[kind], {"lo": prefix, "hi": upper_bound(prefix), "p": prefix + "%"}
    )
    return [str(row[0]) for row in rows]


def upper_bound(prefix: str) -> str:
    """The smallest string above every string starting with ``prefix``.

    Digests are lowercase hex and ids Crockford base32 (uppercase): the bound stays in
    those alphabets (``9`` -> ``a``/``A``, not ``:``) so that it also holds under the
    linguistic collations a PostgreSQL database may use.
    """
    chars = list(prefix)
    while chars:
        last = chars.pop()
        if last == "9":
            return "".join(chars) + ("a" if prefix.startswith("blake3:") else "A")
        if last != "Z":
            return "".join(chars) + chr(ord(last) + 1)
    return "~"
