"""Drift between two runs, traced to the step where it starts: :func:`drift_runs`.

Owns the comparison of the profiles of corresponding tables of two runs. Steps are paired
as ``diff`` pairs them (:func:`~pipetrail.execution.node_pairing.pair_nodes`: by name, then
step, params and wiring; never by call position), and the outputs of paired steps by
output name. For each pair of tables both profiled (tables are profiled when stored: see
:mod:`pipetrail.store.serializers.table_profile`), every column is compared
(:mod:`pipetrail.observability.drift_stats`): PSI and KS/Wasserstein for numeric columns,
PSI over the top categories for categorical ones, the change of null rate, and schema
changes (columns added, removed, or of another type). Equal digests are equal tables:
nothing is computed for them.

A column *drifts* when a measure reaches its threshold and lies above sampling noise
(:class:`~pipetrail.observability.drift_config.DriftThresholds`, read from ``[drift]``
in ``pipetrail.toml``). A drift's **origin** is a step whose output
drifts while no step upstream of it (in run A's lineage) drifts: the drift enters there,
and the drifting steps downstream of it (``downstream``) carry it, whatever they name
their columns. Two sources that drift independently give two origins. The report lists
every origin, upstream first (the order steps started in run A);
:attr:`DriftReport.first` is the most upstream one.

With ``baseline_runs=N``, run B is compared with the pooled profiles of several runs
instead of run A's alone (:mod:`pipetrail.observability.drift_pool` says which runs and
how profiles pool); pairing and origins follow the newest pooled run, and
:attr:`DriftReport.baseline_runs` lists the runs pooled.

Runs of different pipelines are compared only where their steps pair, and the report
says so in its notes; when no step pairs there is nothing to compare, and
:class:`~pipetrail.errors.NotFoundError` says so. Read-only. Imports execution and the
layers below it, never lineage or cli.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from pipetrail.errors import NotFoundError, ParamError
from pipetrail.execution.node_pairing import pair_nodes, recorded_nodes
from pipetrail.observability.drift_config import DriftThresholds, load_thresholds
from pipetrail.observability.drift_pool import baseline_runs as pick_baseline_runs
from pipetrail.observability.drift_pool import pool_profiles
from pipetrail.observability.drift_stats import (
    categorical_distances,
    null_rate,
    numeric_distances,
)

if TYPE_CHECKING:
    from pipetrail.execution.node_pairing import RecordedNode
    from pipetrail.execution.project import Project
    from pipetrail.ledger import Reader

__all__ = [
    "ArtifactDrift",
    "ColumnDrift",
    "DriftOrigin",
    "DriftReport",
    "drift_runs",
]

_RECORDED_PREFIXES = ("metric:", "report:")


@dataclass(frozen=True)
class ColumnDrift:
    """How one column of a table changed between the runs.

    ``change`` is ``added``, ``removed`` or ``type`` for a schema change (None
    otherwise); ``reasons`` says which thresholds were reached (empty: no drift).
    """

    column: str
    kind: str
    drifted: bool
    reasons: tuple[str, ...] = ()
    change: str | None = None
    type_a: str | None = None
    type_b: str | None = None
    psi: float | None = None
    psi_noise: float | None = None
    ks: float | None = None
    ks_noise: float | None = None
    wasserstein: float | None = None
    wasserstein_std: float | None = None
    null_rate_a: float | None = None
    null_rate_b: float | None = None


@dataclass(frozen=True)
class ArtifactDrift:
    """One output compared: node ``node_a`` of run A against ``node_b`` of run B.

    ``pooled`` is how many distinct tables of the baseline runs stand for run A's side
    (1 without ``baseline_runs``).
    """

    node_a: str
    node_b: str
    step: str
    output: str
    digest_a: str
    digest_b: str
    rows_a: int | None = None
    rows_b: int | None = None
    columns: tuple[ColumnDrift, ...] = ()
    note: str | None = None
    pooled: int = 1
    profiles: tuple[dict[str, Any] | None, dict[str, Any] | None] = field(
        default=(None, None), repr=False, compare=False
    )

    @property
    def drifted_columns(self) -> list[str]:
        """The names of the columns that drift."""
        return [c.column for c in self.columns if c.drifted]


@dataclass(frozen=True)
class DriftOrigin:
    """Where a drift enters: a step's output, its drifting columns, the steps it reaches.

    ``downstream`` lists the drifting steps that descend from this one (in run A's
    lineage), which carry the drift rather than start it.
    """

    node: str
    step: str
    output: str
    columns: tuple[str, ...]
    downstream: tuple[str, ...] = ()


@dataclass(frozen=True)
class DriftReport:
    """The drift of run B against run A (see the module docstring).

    ``baseline_runs`` lists the runs whose profiles were pooled as the baseline, newest
    first (``run_a`` is the first of them); empty when run A alone is the baseline.
    """

    run_a: str
    run_b: str
    pipeline_a: str
    pipeline_b: str
    thresholds: DriftThresholds
    artifacts: tuple[ArtifactDrift, ...]
    origins: tuple[DriftOrigin, ...]
    notes: tuple[str, ...] = ()
    baseline_runs: tuple[str, ...] = ()

    @property
    def first(self) -> DriftOrigin | None:
        """The most upstream origin, or None when nothing drifts."""
        return self.origins[0] if self.origins else None

    @property
    def drifted(self) -> bool:
        """Whether any column of any compared table drifts."""
        return bool(self.origins)

    def to_dict(self) -> dict[str, Any]:
        """Return the report as JSON-able data (non-finite figures as text)."""
        artifacts = []
        for item in self.artifacts:
            # Field by field, not asdict: that would deep-copy the profiles, left out here.
            data = {name: getattr(item, name) for name in _ARTIFACT_FIELDS}
            data["columns"] = [_column_dict(column) for column in item.columns]
            artifacts.append(data)
        return {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "pipeline_a": self.pipeline_a,
            "pipeline_b": self.pipeline_b,
            "thresholds": asdict(self.thresholds),
            "drifted": self.drifted,
            "first": None if self.first is None else asdict(self.first),
            "origins": [asdict(o) for o in self.origins],
            "artifacts": artifacts,
            "notes": list(self.notes),
            "baseline_runs": list(self.baseline_runs),
        }


_ARTIFACT_FIELDS = tuple(f.name for f in fields(ArtifactDrift) if f.name != "profiles")
_COLUMN_FIELDS = tuple(f.name for f in fields(ColumnDrift))


def _column_dict(column: ColumnDrift) -> dict[str, Any]:
    """A column's drift as JSON-able data (its fields are numbers, text and tuples of text)."""
    return {name: _json_number(getattr(column, name)) for name in _COLUMN_FIELDS}


_INFINITIES = (float("inf"), float("-inf"))


def _json_number(value: Any) -> Any:
    if (isinstance(value, float) and value != value) or value in _INFINITIES:
        return str(value)
    return value


class _Profiles:
    """Reads each table's linked profile once (None: not a table, or no profile)."""

    def __init__(self, project: Project, reader: Reader) -> None:
        self.project = project
        self.reader = reader
        self.found: dict[str, tuple[dict[str, Any] | None, str | None]] = {}

    def get(self, digest: str) -> tuple[dict[str, Any] | None, str | None]:
        """Return ``(profile, why there is none)``."""
        if digest not in self.found:
            self.found[digest] = self._read(digest)
        return self.found[digest]

    def _read(self, digest: str) -> tuple[dict[str, Any] | None, str | None]:
        record = self.reader.artifact(digest)
        if record is None or record["serializer"] != "parquet":
            return None, "not a table"
        link = (record.get("meta") or {}).get("profile")
        if not isinstance(link, dict) or not isinstance(link.get("digest"), str):
            return None, f"table {digest[:19]} has no profile (stored before profiles existed)"
        try:
            data = self.project.store.get_bytes(link["digest"])
        except NotFoundError:  # removed from the store: compare the other tables
            return None, f"the profile of table {digest[:19]} is missing from the store"
        return json.loads(data), None


def _compare_columns(
    a: dict[str, Any], b: dict[str, Any], limits: DriftThresholds
) -> tuple[ColumnDrift, ...]:
    columns_a = {c["name"]: c for c in a["columns"]}
    columns_b = {c["name"]: c for c in b["columns"]}
    found: list[ColumnDrift] = []
    for name in [*columns_a, *(n for n in columns_b if n not in columns_a)]:
        col_a, col_b = columns_a.get(name), columns_b.get(name)
        if col_a is None or col_b is None:
            change = "added" if col_a is None else "removed"
            found.append(
                ColumnDrift(
                    name,
                    "schema",
                    True,
                    (f"column {change}",),
                    change=change,
                    type_a=None if col_a is None else col_a["type"],
                    type_b=None if col_b is None else col_b["type"],
                )
            )
            continue
        found.append(_compare_column(name, col_a, col_b, a["rows"], b["rows"], limits))
    return tuple(found)


def _compare_column(
    name: str,
    col_a: dict[str, Any],
    col_b: dict[str, Any],
    rows_a: int,
    rows_b: int,
    limits: DriftThresholds,
) -> ColumnDrift:
    reasons: list[str] = []
    type_a, type_b = col_a["type"], col_b["type"]
    rate_a, rate_b = null_rate(col_a, rows_a), null_rate(col_b, rows_b)
    if type_a != type_b:
        return ColumnDrift(
            name,
            "schema",
            True,
            (f"type changed from {type_a} to {type_b}",),
            change="type",
            type_a=type_a,
            type_b=type_b,
            null_rate_a=rate_a,
            null_rate_b=rate_b,
        )
    change = rate_b - rate_a
    if abs(change) >= limits.null_rate and (rate_a or rate_b):
        reasons.append(f"null rate {change * 100:+.1f} points (limit {limits.null_rate * 100:g})")
    kind = col_a["kind"]
    measures: dict[str, float] = {}
    if kind in ("numeric", "temporal"):
        measures = numeric_distances(col_a, col_b, limits.significance) or {}
    elif kind == "categorical":
        found = categorical_distances(col_a, col_b, limits.significance)
        measures = {"psi": found["psi"], "psi_noise": found["psi_noise"]}
    checks = (
        ("psi", limits.psi, "psi_noise"),
        ("ks", limits.ks, "ks_noise"),
        ("wasserstein_std", limits.wasserstein_std, "ks_noise"),
    )
    for key, limit, noise_key in checks:
        if limit is None or key not in measures or measures[key] < limit:
            continue
        noise = measures[noise_key]
        if key == "wasserstein_std":  # judged with KS: a spread shift must be more than noise
            if measures["ks"] >= noise:
                reasons.append(f"{key} {measures[key]:.3g} >= {limit:g}")
        elif measures[key] >= noise:
            reasons.append(f"{key} {measures[key]:.3g} >= {limit:g} (noise {noise:.2g})")
    return ColumnDrift(
        name,
        kind,
        bool(reasons),
        tuple(reasons),
        type_a=type_a,
        type_b=type_b,
        null_rate_a=rate_a,
        null_rate_b=rate_b,
        psi=measures.get("psi"),
        psi_noise=measures.get("psi_noise"),
        ks=measures.get("ks"),
        ks_noise=measures.get("ks_noise"),
        wasserstein=measures.get("wasserstein"),
        wasserstein_std=measures.get("wasserstein_std"),
    )


def _ancestors(nodes: list[RecordedNode]) -> dict[str, set[str]]:
    """Each node's upstream nodes, transitively (from recorded wiring, else digests)."""
    made_by: dict[str, str] = {}
    found: dict[str, set[str]] = {}
    for node in nodes:
        if node.upstream is not None:
            direct = set(node.upstream)
        else:
            direct = {made_by[d] for d in node.inputs.values() if d in made_by}
        direct.discard(node.node_id)
        found[node.node_id] = set(direct).union(*(found.get(u, set()) for u in direct))
        for digest in node.outputs.values():
            made_by.setdefault(digest, node.node_id)
    return found


def _origins(
    artifacts: list[ArtifactDrift], ancestors: dict[str, set[str]]
) -> tuple[DriftOrigin, ...]:
    """The drifting outputs of steps with no drifting step upstream, upstream first."""
    drifting = {item.node_a for item in artifacts if item.drifted_columns}
    origins = []
    for item in artifacts:
        if not item.drifted_columns or ancestors.get(item.node_a, set()) & drifting:
            continue
        carried = tuple(
            node
            for node in dict.fromkeys(a.node_a for a in artifacts)
            if node in drifting and item.node_a in ancestors.get(node, set())
        )
        origins.append(
            DriftOrigin(item.node_a, item.step, item.output, tuple(item.drifted_columns), carried)
        )
    return tuple(origins)


def drift_runs(
    project: Project,
    ref_a: str | None,
    ref_b: str,
    *,
    thresholds: DriftThresholds | None = None,
    baseline_runs: int | None = None,
) -> DriftReport:
    """Compare the table profiles of run ``ref_b`` against run ``ref_a`` step by step.

    Args:
        project: the project holding both runs.
        ref_a: the baseline run (id, unique prefix or ``latest``); None (only with
            ``baseline_runs``): the runs of B's pipeline before B.
        ref_b: the run compared with it.
        thresholds: when a column drifts; ``[drift]`` of ``pipetrail.toml`` by default.
        baseline_runs: pool the profiles of this many runs as the baseline (module
            docstring); None compares with run A alone.

    Raises:
        ParamError: ``baseline_runs`` is out of range or there is no earlier run to
            pool; ``ref_a`` is None without ``baseline_runs``.
        NotFoundError: a ref matches no run, or no step of one run pairs with a step of
            the other.
        AmbiguousPrefixError: a ref matches several runs.
        ProjectError: ``[drift]`` in ``pipetrail.toml`` is malformed.
    """
    limits = thresholds or load_thresholds(project.root)
    reader = project.reader()
    run_b = reader.resolve_run(ref_b)
    pipeline_b = str(reader.get_run(run_b)["pipeline"])
    pooled: list[str] = []
    if ref_a is None:
        if baseline_runs is None:
            raise ParamError("drift: name run A, or pool a baseline with baseline_runs=N")
        pooled = pick_baseline_runs(
            reader, before=run_b, pipeline=pipeline_b, count=baseline_runs, inclusive=False
        )
        run_a = pooled[0]
    else:
        run_a = reader.resolve_run(ref_a)
    pipeline_a = str(reader.get_run(run_a)["pipeline"])
    if ref_a is not None and baseline_runs is not None:
        pooled = pick_baseline_runs(
            reader, before=run_a, pipeline=pipeline_a, count=baseline_runs, inclusive=True
        )
    nodes_a, sources_a = recorded_nodes(reader, run_a)
    nodes_b, sources_b = recorded_nodes(reader, run_b)
    pairing = pair_nodes(nodes_a, nodes_b, sources_a=sources_a, sources_b=sources_b)
    notes: list[str] = []
    if pipeline_a != pipeline_b:
        if not pairing.pairs:
            raise NotFoundError(
                f"runs {run_a} (pipeline {pipeline_a!r}) and {run_b} (pipeline "
                f"{pipeline_b!r}) have no step in common, so no table corresponds; compare "
                "two runs of one pipeline"
            )
        notes.append(
            f"the runs are of different pipelines ({pipeline_a!r} and {pipeline_b!r}): only "
            f"the {len(pairing.pairs)} step(s) that pair are compared"
        )
    if pairing.removed or pairing.added:
        notes.append(
            f"{len(pairing.removed)} step(s) only in run A and {len(pairing.added)} only in "
            "run B are not compared"
        )
    for group in pairing.ambiguous:
        notes.append(f"steps {', '.join(group.a)} not compared: {group.reason}")
    by_id_a = {n.node_id: n for n in nodes_a}
    by_id_b = {n.node_id: n for n in nodes_b}
    earlier = _earlier_nodes(reader, nodes_a, sources_a, pooled[1:])
    profiles = _Profiles(project, reader)
    artifacts: list[ArtifactDrift] = []
    for pair in pairing.pairs:
        node_a, node_b = by_id_a[pair.a], by_id_b[pair.b]
        for output, digest_a in node_a.outputs.items():
            digest_b = node_b.outputs.get(output)
            if digest_b is None or output.startswith(_RECORDED_PREFIXES):
                continue
            more = [d for n in earlier.get(node_a.node_id, []) if (d := n.outputs.get(output))]
            found = _compare_output(
                profiles, node_a, node_b, output, (digest_a, *more), digest_b, limits
            )
            if found is not None:
                artifacts.append(found)
    return DriftReport(
        run_a=run_a,
        run_b=run_b,
        pipeline_a=pipeline_a,
        pipeline_b=pipeline_b,
        thresholds=limits,
        artifacts=tuple(artifacts),
        origins=_origins(artifacts, _ancestors(nodes_a)),
        notes=tuple(notes),
        baseline_runs=tuple(pooled),
    )


def _earlier_nodes(
    reader: Reader, nodes: list[RecordedNode], sources: dict[str, str], runs: list[str]
) -> dict[str, list[RecordedNode]]:
    """For each node of the newest baseline run, its counterparts in the older ``runs``."""
    found: dict[str, list[RecordedNode]] = {}
    for run_id in runs:
        other, other_sources = recorded_nodes(reader, run_id)
        by_id = {n.node_id: n for n in other}
        pairing = pair_nodes(nodes, other, sources_a=sources, sources_b=other_sources)
        for pair in pairing.pairs:
            found.setdefault(pair.a, []).append(by_id[pair.b])
    return found


def _compare_output(
    profiles: _Profiles,
    node_a: RecordedNode,
    node_b: RecordedNode,
    output: str,
    digests_a: tuple[str, ...],
    digest_b: str,
    limits: DriftThresholds,
) -> ArtifactDrift | None:
    """One paired output compared, or None when it is not a table in either run.

    ``digests_a``: run A's table first, then those of the older baseline runs (pooled;
    a table several runs share counts once).
    """
    digest_a = digests_a[0]
    distinct = list(dict.fromkeys(digests_a))
    profile_a, why_a = profiles.get(digest_a)
    profile_b, why_b = (profile_a, why_a) if digest_b == digest_a else profiles.get(digest_b)
    base = ArtifactDrift(
        node_a=node_a.node_id,
        node_b=node_b.node_id,
        step=node_a.step,
        output=output,
        digest_a=digest_a,
        digest_b=digest_b,
    )
    if profile_a is None or profile_b is None:
        if why_a == why_b == "not a table":
            return None
        note = next(w for w in (why_a, why_b) if w is not None)
        if note == "not a table":
            note = "a table in one run only"
        return replace(base, note=note)
    if len(distinct) > 1:
        older = [p for d in distinct[1:] if (p := profiles.get(d)[0]) is not None]
        profile_a = pool_profiles([profile_a, *older])
        base = replace(base, pooled=1 + len(older))
    found = replace(
        base, rows_a=profile_a["rows"], rows_b=profile_b["rows"], profiles=(profile_a, profile_b)
    )
    if distinct == [digest_b]:  # the same table: nothing drifts
        return found
    return replace(found, columns=_compare_columns(profile_a, profile_b, limits))
