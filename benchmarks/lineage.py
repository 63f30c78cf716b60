"""Lineage queries on a large synthetic ledger: upstream provenance and downstream impact.

The ledger: 1,000,000 artifacts and 300,000 step runs (13,815 runs) in a SQLite metadata
store, written straight into the projection tables the queries read (``runs``,
``step_runs``, ``artifacts``, ``step_run_io``, ``sources``) with ``executemany`` in big
transactions. No events are written: the lineage queries read only projections, and
appending 1.6 million hash-chained events would take long and change nothing here. The
schema comes from ``Ledger.open`` (the real migrations); no ``ANALYZE`` is run, as in a
real project.

Shape (deterministic, from a seed): runs of 8-40 step runs (22 on average), mostly
chains where a step reads the previous step's output and, one time in three, also an
earlier one (fan-in), with fan-out groups (3-6 steps read one output, a merge step reads
them all). Step runs write 1-4 outputs. A run reads one source file: its own (70%) or one
of 200 shared "wide" sources of Zipf-like popularity (the widest is read by 849 runs). A
quarter of the runs re-run an earlier one: their first steps are cache hits (same
digests, ``reused_step_run_id``; 13% of all step runs), the rest execute anew. The
remaining artifacts are logs, code and environments, which no step reads. One source,
the impact probe, is read by just enough runs to reach 10,000 artifacts downstream.

Cached in benchmarks/.work/lineage/ (1.2 GB; about 75 s to build) and reused while its
parameters and the schema revision match (``params.json``, written last); delete the
folder to rebuild.

Rows (each query on a fresh read-only connection, as every CLI command opens one; pages
warmed by a first round that is not counted):

* ``lineage.upstream`` (target <= 100 ms): ``upstream()`` of 25 artifacts whose longest
  chain back to their source is 20 step runs (checked), n = 25 x repetitions;
* ``lineage.downstream`` (target <= 1 s): ``downstream()`` of the impact probe;
* context: ``resolve_ref()`` of a 10-character digest prefix, and ``path()`` from a
  source to an artifact 20 step runs below it.

Run: ``.venv/bin/python benchmarks/lineage.py [--quick] [--index]``. With ``--index`` the
two covering indexes proposed for ``step_run_io`` (``_INDEXES``) are created in the
cached database first; without it they are dropped, so each run measures what it says.
"""

from __future__ import annotations

import json
import random
import sqlite3
import statistics
import time
from typing import TYPE_CHECKING, Any

from _common import WORK_DIR, Result, log, main, summarize

from pipetrail.ledger.ledger import Ledger
from pipetrail.ledger.migrate import HEAD_REVISION
from pipetrail.ledger.queries import SqliteReader
from pipetrail.lineage.queries import downstream, path, resolve_ref, upstream

if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from pathlib import Path

    from pipetrail.lineage.graph import LineageGraph

PARAMS: dict[str, Any] = {
    "artifacts": 1_000_000,
    "step_runs": 300_000,
    "seed": 20261127,
    "shape": 1,
    "schema": HEAD_REVISION,
    "impact": 10_000,
    "probe_depth": 20,
}
UPSTREAM_TARGET_MS = 100.0
DOWNSTREAM_TARGET_S = 1.0
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_COLUMNS = {
    "artifacts": "digest, blob, serializer, type_name, size, meta, role, first_run_id, "
    "first_step_run_id, created_at, first_seq",
    "step_runs": "step_run_id, run_id, node_id, step, pipeline, status, cache_key, "
    "cache_decision, cache_reason, reused_step_run_id, code_digest, components, inputs, "
    "outputs, resources, logs, seed, started_at, ended_at, error, traceback, first_seq, "
    "last_seq",
    "step_run_io": "step_run_id, direction, name, digest, run_id",
    "runs": "run_id, pipeline, pipeline_fingerprint, status, owner, host, process, params, "
    "seed, git, environment, record, started_at, ended_at, error, steps_total, first_seq, "
    "last_seq",
    "sources": "run_id, path, digest, size, mtime_ns, observed_at, by_reference, seq",
}
_INDEXES = {
    "ix_step_run_io_digest_cover": "CREATE INDEX IF NOT EXISTS ix_step_run_io_digest_cover "
    "ON step_run_io (digest, direction, run_id, step_run_id)",
    "ix_step_run_io_step_cover": "CREATE INDEX IF NOT EXISTS ix_step_run_io_step_cover "
    "ON step_run_io (step_run_id, direction, digest)",
}


class _Gen:
    """Deterministic ids, digests and timestamps."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.ms = 1_767_225_600_000  # 2026-01-01T00:00:00Z

    def digest(self) -> str:
        return f"blake3:{self.rng.getrandbits(256):064x}"

    def new_id(self) -> str:
        self.ms += 1
        value = self.ms << 80 | self.rng.getrandbits(80)
        return "".join(_CROCKFORD[(value >> (5 * i)) & 31] for i in range(25, -1, -1))

    def ts(self) -> str:
        secs, ms = divmod(self.ms, 1000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}000Z"


def _plan(rng: random.Random, length: int) -> list[list[tuple[str, int, int]]]:
    """A run's DAG: per step, its inputs as (name, producing step or -1 for a source, output)."""
    steps: list[list[tuple[str, int, int]]] = [[("raw", -1, 0)]]
    while len(steps) < length:
        k = len(steps)
        if rng.random() < 0.12 and k + 4 < length:  # fan-out group, then a merge step
            group = rng.randint(3, 6)
            steps.extend([[("x", k - 1, 0)] for _ in range(group)])
            steps.append([(f"parts[{i}]", k + i, 0) for i in range(group)])
            continue
        inputs = [("x", k - 1, 0)]
        if k >= 2 and rng.random() < 0.35:
            inputs.append(("extra", rng.randrange(k - 1), 0))
        steps.append(inputs)
    return steps[:length]


def build(db: Path) -> dict[str, Any]:
    """Write the synthetic ledger to ``db``; return what the benchmark needs to know."""
    Ledger.open(f"sqlite:///{db}", actor="benchmark").close()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    g = _Gen(int(PARAMS["seed"]))
    rng = g.rng
    wide = [g.digest() for _ in range(200)]
    weights = [1 / (i + 1) ** 1.1 for i in range(len(wide))]
    probe_source = g.digest()
    arts: list[tuple[Any, ...]] = []
    steps: list[tuple[Any, ...]] = []
    io: list[tuple[Any, ...]] = []
    runs: list[tuple[Any, ...]] = []
    srcs: list[tuple[Any, ...]] = []
    n_art = n_steps = seq = impact_reached = 0
    done: list[dict[str, Any]] = []  # executed runs that may be re-run
    probes: list[str] = []
    pairs: list[list[str]] = []  # (private source, artifact 20 deep) for path()
    impact_full = False
    source_art = set()

    def flush() -> None:
        conn.execute("BEGIN")
        for table, rows in (("artifacts", arts), ("step_runs", steps), ("step_run_io", io),
                            ("runs", runs), ("sources", srcs)):  # fmt: skip
            marks = ",".join("?" * len(_COLUMNS[table].split(",")))
            sql = f"INSERT INTO {table} ({_COLUMNS[table]}) VALUES ({marks})"  # noqa: S608
            conn.executemany(sql, rows)
        conn.execute("COMMIT")
        for rows in (arts, steps, io, runs, srcs):
            rows.clear()

    def artifact(digest: str, role: str, run_id: str, sr: str | None, rows: int = 0) -> None:
        nonlocal n_art, seq
        seq += 1
        n_art += 1
        meta = {"rows": rows, "schema_fingerprint": g.digest()} if rows else {}
        kind, type_name = ("parquet", "pandas.DataFrame") if rows else ("bytes", "text/plain")
        size, text = rng.randrange(100, 10**7), json.dumps(meta)
        arts.append((digest, digest, kind, type_name, size, text, role, run_id, sr, g.ts(), seq))

    while n_steps < PARAMS["step_runs"]:
        run_id, seq0 = g.new_id(), seq + 1
        rerun = done[rng.randrange(len(done))] if done and rng.random() < 0.25 else None
        if rerun is not None and rerun["src"][0] == probe_source and impact_full:
            rerun = None  # keep the impact probe's reach near its target
        if rerun is not None:
            plan, cut, sources = rerun["plan"], rng.randint(1, len(rerun["plan"])), rerun["src"]
        else:
            plan, cut = _plan(rng, min(40, max(8, int(rng.gauss(22, 8))))), 0
            sources = [wide[rng.choices(range(len(wide)), weights)[0]]]
            if rng.random() < 0.7:
                sources[0] = g.digest()
            if not impact_full and rng.random() < 0.05:
                sources = [probe_source]
        into_probe = sources[0] == probe_source
        for i, digest in enumerate(sources):
            srcs.append((run_id, f"data/raw_{i}.csv", digest, 1000, 0, g.ts(), 0, seq))
            if digest not in source_art:
                source_art.add(digest)
                artifact(digest, "source", run_id, None)
        outs: list[list[str]] = []
        ids: list[str] = []
        depth: list[int] = []
        for k, inputs in enumerate(plan):
            sr, cached = g.new_id(), k < cut
            names = {n: (sources[0] if j < 0 else outs[j][o]) for n, j, o in inputs}
            if rerun is not None and cached:
                out, origin = rerun["outs"][k], rerun["ids"][k]
            else:
                out, origin = [g.digest() for _ in range(rng.choice((1, 1, 2, 2, 3, 4)))], None
                for d in out:
                    artifact(d, "output", run_id, sr, rows=rng.randrange(1, 10**6))
                impact_reached += len(out) if into_probe else 0
            outs.append(out)
            ids.append(origin or sr)
            depth.append(1 + max((depth[j] if j >= 0 else 0) for _, j, _ in inputs))
            if not cached and depth[-1] == PARAMS["probe_depth"] and len(probes) < 400:
                probes.append(out[0])
                if rerun is None and sources[0] != probe_source and sources[0] not in wide:
                    pairs.append([sources[0], out[0]])
            params = {"lr": {"$f": round(rng.random(), 3)}, "n": rng.randrange(100)}
            comps = {"allow_pickle": False, "code": g.digest(), "code_parts": {f"s{k}": g.digest()},
                     "distributions": {"numpy": "2.1.0", "pandas": "2.2.3"}, "inputs": names,
                     "params": params, "seed": k, "step": f"step_{k}", "version": None}  # fmt: skip
            outputs = {f"out{i}" if i else "output": d for i, d in enumerate(out)}
            seq += 1
            steps.append((sr, run_id, f"step_{k}", f"step_{k}", "synthetic",
                          "cached" if cached else "completed", g.digest(),
                          "hit" if cached else "miss", "synthetic", origin, comps["code"],
                          json.dumps(comps, sort_keys=True), json.dumps(names),
                          json.dumps(outputs), '{"wall_ns": 1000}', None, k, g.ts(), g.ts(),
                          None, None, seq, seq))  # fmt: skip
            io.extend((sr, "in", n, d, run_id) for n, d in names.items())
            io.extend((sr, "out", n, d, run_id) for n, d in outputs.items())
            n_steps += 1
        impact_full = impact_reached >= int(PARAMS["impact"])
        runs.append((run_id, "synthetic", g.digest(), "completed", "bench", "host", "1", "{}",
                     0, None, None, "{}", g.ts(), g.ts(), None, len(plan), seq0, seq))  # fmt: skip
        if rerun is None:
            done.append({"plan": plan, "outs": outs, "ids": ids, "src": sources})
        if len(steps) >= 50_000:
            flush()
            log(f"  {n_steps:,} step runs, {n_art:,} artifacts")
    while n_art < PARAMS["artifacts"]:  # logs, code, environments: not in step_run_io
        artifact(g.digest(), "logs", "", None)
        if len(arts) >= 200_000:
            flush()
    flush()
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    sampler = random.Random(1)
    return {
        "probe_source": probe_source,
        "probes": sampler.sample(probes, 25),
        "pairs": sampler.sample(pairs, 5),
    }


def ledger(rebuild: bool = False) -> tuple[Path, dict[str, Any]]:
    """Return the cached ledger and its probes, building them when missing or stale."""
    folder = WORK_DIR / "lineage"
    db, info_file = folder / "ledger.db", folder / "params.json"
    if not rebuild and info_file.exists():
        info = json.loads(info_file.read_text())
        if info.get("params") == PARAMS and db.exists():
            return db, info
    folder.mkdir(parents=True, exist_ok=True)
    for stale in (info_file, db, db.with_name("ledger.db-wal"), db.with_name("ledger.db-shm")):
        stale.unlink(missing_ok=True)
    log(f"lineage: building the synthetic ledger in {db} (1-3 minutes, once)")
    start = time.perf_counter()
    info = build(db) | {"params": PARAMS, "build_s": time.perf_counter() - start}
    info_file.write_text(json.dumps(info, indent=1))  # written last: marks the DB complete
    return db, info


def _longest_chain(graph: LineageGraph) -> int:
    """The most step runs on one upstream chain of an (acyclic) lineage graph."""
    memo: dict[str, int] = {}

    def longest(node: str) -> int:
        if node not in memo:
            producers = [e.source for e in graph.edges_to(node) if e.kind == "output"]
            inputs = [e.source for p in producers for e in graph.edges_to(p) if e.kind == "input"]
            memo[node] = 1 + max(map(longest, inputs), default=0) if producers else 0
        return memo[node]

    return longest(graph.roots[0])


def _timed(db: Path, query: Callable[..., Any], *args: Any, **kw: Any) -> tuple[float, Any]:
    """Time one query on a fresh read-only connection, as each CLI command opens one."""
    reader = SqliteReader(db)
    try:
        start = time.perf_counter()
        result = query(reader, *args, **kw)
        return time.perf_counter() - start, result
    finally:
        reader.close()


def run(quick: bool, index: bool = False) -> list[Result]:
    db, info = ledger()
    with sqlite3.connect(db) as conn:  # the proposed indexes exist only with --index
        for name, sql in _INDEXES.items():
            conn.execute(sql if index else f"DROP INDEX IF EXISTS {name}")
    probes = [str(p) for p in info["probes"]][: 10 if quick else 25]
    source = str(info["probe_source"])
    reps = 3 if quick else 7
    log(f"lineage: {len(probes)} upstream probes x {reps}, downstream x {reps}")
    for p in probes:  # warm the page cache and check the probes' depth
        _, g = _timed(db, upstream, p)
        if _longest_chain(g) != PARAMS["probe_depth"]:
            raise RuntimeError(f"probe {p} is not {PARAMS['probe_depth']} step runs deep")
    up_ms, sizes = [], []
    for _ in range(reps):
        for p in probes:
            seconds, g = _timed(db, upstream, p)
            up_ms.append(seconds * 1000)
            sizes.append(len(g.step_runs))
    _timed(db, downstream, source)
    down: list[float] = []
    for _ in range(reps):
        seconds, g = _timed(db, downstream, source)
        down.append(seconds)
    reached, runs = len(g.artifacts) - 1, len(g.runs)
    log(f"  downstream: {', '.join(f'{s:.3f}' for s in down)} s")
    prefix = [_timed(db, resolve_ref, p[7:17])[0] * 1000 for p in probes]
    pairs = [(str(a), str(b)) for a, b in info["pairs"]]
    paths = []
    for rep in range(reps + 1):  # the first round warms the page cache
        for start, end in pairs:
            seconds, found = _timed(db, path, start, end)
            if found is None:
                raise RuntimeError(f"no path from {start} to {end}")
            if rep:
                paths.append(seconds * 1000)
    return [
        summarize(
            "lineage.upstream",
            f"upstream() of an artifact {PARAMS['probe_depth']} steps deep "
            f"({statistics.median(sizes):.0f} step runs)",
            up_ms,
            "ms",
            at_most=UPSTREAM_TARGET_MS,
        ),
        summarize(
            "lineage.downstream",
            f"downstream() of a source: {reached:,} artifacts, {runs} runs",
            down,
            "s",
            at_most=DOWNSTREAM_TARGET_S,
        ),
        summarize("lineage.resolve", "resolve_ref() of a 10-char digest prefix", prefix, "ms"),
        summarize("lineage.path", "path() from a source to an artifact 20 deep", paths, "ms"),
    ]


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--index", action="store_true", help="create the proposed covering indexes first"
    )


if __name__ == "__main__":
    raise SystemExit(main(run, "Lineage queries on a 1M-artifact ledger.", _options))
